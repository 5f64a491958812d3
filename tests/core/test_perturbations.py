import pytest
import torch

from videoktr.core.perturbations import (
    TEMPORAL_PERTURBATIONS,
    VISUAL_PERTURBATIONS,
    apply_perturbation,
    permute_temporal_patches,
    segment_shuffle_permutation,
    shuffle_permutation,
)
from videoktr.core.registry import UnknownNameError
from videoktr.errors import UserError

MERGE = 2


def patch_features(t: int, rows: int = 2, dim: int = 3, offset: float = 0.0) -> torch.Tensor:
    """(t*rows, dim) features whose every row of temporal patch i equals i + 1 + offset (so patches are visible)."""
    return (
        (torch.arange(t, dtype=torch.float32) + 1 + offset)
        .repeat_interleave(rows)[:, None]
        .expand(-1, dim)
        .clone()
    )


def grid(t: int, rows: int = 2) -> list[int]:
    # rows per patch = h*w/merge^2 -> h=2, w=2*rows with merge 2 gives 1*rows merged rows
    return [t, 2, 2 * rows]


def patch_ids(feat: torch.Tensor, t: int) -> list[int]:
    """The original patch index (value - 1) in each temporal slot of ``feat``."""
    return (feat.reshape(t, -1)[:, 0] - 1).long().tolist()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_permute_temporal_patches_moves_row_blocks():
    feat = patch_features(3, rows=2)  # patch values 1,1 | 2,2 | 3,3
    out = permute_temporal_patches(feat, 3, torch.tensor([2, 0, 1]))
    assert out[:, 0].tolist() == [3, 3, 1, 1, 2, 2]


def test_zero_zeroes_every_video():
    feats = (patch_features(4), patch_features(2))
    out = apply_perturbation(
        VISUAL_PERTURBATIONS, "zero", feats, torch.tensor([grid(4), grid(2)]), MERGE, gen()
    )
    assert all(o.abs().sum() == 0 and o.shape == f.shape for o, f in zip(out, feats))


@pytest.mark.parametrize("t,expected_zeroed", [(8, 4), (6, 3), (5, 2), (2, 1), (1, 1)])
def test_half_zeroes_floor_half_of_the_patches(t, expected_zeroed):
    # t=5 -> floor(5/2)=2; t=1 -> the single patch (max(1, 0) = 1)
    for seed in range(5):
        (out,) = VISUAL_PERTURBATIONS.get("half")(
            (patch_features(t),), torch.tensor([grid(t)]), MERGE, gen(seed)
        )
        per_patch = out.reshape(t, -1)
        zeroed = (per_patch == 0).all(dim=1)
        assert int(zeroed.sum()) == expected_zeroed
        # the kept patches are untouched (value = index + 1)
        kept = (~zeroed).nonzero().flatten()
        assert torch.equal(per_patch[kept, 0], (kept + 1).float())


def test_half_choice_depends_on_seed():
    patterns = set()
    for seed in range(20):
        (out,) = VISUAL_PERTURBATIONS.get("half")(
            (patch_features(8),), torch.tensor([grid(8)]), MERGE, gen(seed)
        )
        patterns.add(tuple((out.reshape(8, -1)[:, 0] == 0).tolist()))
    assert len(patterns) > 1


@pytest.mark.parametrize("t", [2, 3, 4, 8])
def test_shuffle_is_never_the_identity(t):
    seen = set()
    for seed in range(300):
        perm = shuffle_permutation(t, gen(seed))
        assert sorted(perm.tolist()) == list(range(t))
        assert perm.tolist() != list(range(t))
        seen.add(tuple(perm.tolist()))
    if t >= 3:
        assert len(seen) > 1  # random, not one fixed derangement


def test_temporal_strategies_skip_single_patch_videos():
    feats = (patch_features(1), patch_features(4))
    grids = torch.tensor([grid(1), grid(4)])
    for name in TEMPORAL_PERTURBATIONS.names():
        out = apply_perturbation(TEMPORAL_PERTURBATIONS, name, feats, grids, MERGE, gen())
        assert out[0] is None
        assert out[1] is not None and patch_ids(out[1], 4) != [0, 1, 2, 3]


def test_reverse_reverses_patches():
    (out,) = TEMPORAL_PERTURBATIONS.get("reverse")(
        (patch_features(4),), torch.tensor([grid(4)]), MERGE, gen()
    )
    assert patch_ids(out, 4) == [3, 2, 1, 0]


def test_segment_shuffle_keeps_segments_contiguous_and_moves_them():
    # t=8, 4 segments: [0,1] [2,3] [4,5] [6,7]; every output pair must be one of them, in a non-identity order
    segments = {(0, 1), (2, 3), (4, 5), (6, 7)}
    for seed in range(100):
        perm = segment_shuffle_permutation(8, gen(seed), n_segments=4).tolist()
        pairs = [tuple(perm[i : i + 2]) for i in range(0, 8, 2)]
        assert set(pairs) == segments
        assert perm != list(range(8))


def test_segment_shuffle_with_more_segments_than_patches_shuffles_patches():
    perm = segment_shuffle_permutation(3, gen(1), n_segments=4)
    assert sorted(perm.tolist()) == [0, 1, 2] and perm.tolist() != [0, 1, 2]
    with pytest.raises(UserError, match="n_segments"):
        segment_shuffle_permutation(8, gen(), n_segments=1)


def test_replace_uses_a_different_video_with_the_same_grid():
    a, b, c = patch_features(2, offset=0), patch_features(2, offset=10), patch_features(4, offset=20)
    feats = (a, a, b, b, c, c.clone() + 1)
    grids = torch.tensor([grid(2)] * 4 + [grid(4)] * 2)
    out = VISUAL_PERTURBATIONS.get("replace")(feats, grids, MERGE, gen())
    assert torch.equal(out[0], b) and torch.equal(out[1], b)  # copies of `a` are not "another video"
    assert torch.equal(out[2], a) and torch.equal(out[3], a)
    assert torch.equal(out[4], c + 1) and torch.equal(out[5], c)


def test_replace_without_partner_suggests_zero():
    a = patch_features(2)
    with pytest.raises(UserError, match="'zero'"):
        VISUAL_PERTURBATIONS.get("replace")((a, a.clone()), torch.tensor([grid(2)] * 2), MERGE, gen())


def test_drop_is_not_a_feature_operation():
    assert "drop" in VISUAL_PERTURBATIONS
    with pytest.raises(ValueError, match="attention"):
        VISUAL_PERTURBATIONS.get("drop")((patch_features(2),), torch.tensor([grid(2)]), MERGE, gen())


def test_unknown_names_list_valid_ones():
    with pytest.raises(UnknownNameError, match="valid: drop, half, replace, zero"):
        VISUAL_PERTURBATIONS.get("blur")
    with pytest.raises(UnknownNameError, match="valid: reverse, segment_shuffle, shuffle"):
        TEMPORAL_PERTURBATIONS.get("flip")


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="do not match"):
        VISUAL_PERTURBATIONS.get("zero")((patch_features(3),), torch.tensor([grid(4)]), MERGE, gen())


def test_temporal_perturbation_keeps_autograd():
    feat = patch_features(4).requires_grad_()
    (out,) = TEMPORAL_PERTURBATIONS.get("shuffle")((feat,), torch.tensor([grid(4)]), MERGE, gen())
    out.sum().backward()
    assert torch.equal(feat.grad, torch.ones_like(feat))  # a permutation: every row used exactly once
