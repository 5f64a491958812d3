"""Feature-level video perturbations for the visual (V) and temporal (T) attribution signals (METHOD 1).

Qwen2.5-VL encodes every temporal patch (``temporal_patch_size`` frames, 2 by default) independently: its vision
attention never crosses temporal patches. So the features of a perturbed video are a function of the original
features, and no second vision pass is needed:

- video ``v`` has features ``(t * h' * w', D)`` with ``t, h, w = video_grid_thw[v]``, ``h' = h / merge``,
  ``w' = w / merge``: ``t`` temporal patches of ``h' * w'`` contiguous rows each;
- a frame shuffle in units of temporal patches is a permutation of those row blocks.

Every strategy has one signature::

    fn(features: tuple[Tensor, ...], grid_thw: (V, 3), merge_size: int, generator: torch.Generator, **options)
        -> tuple[Tensor | None, ...]   # one entry per video, same shapes as the input

A temporal strategy returns ``None`` for a video that has a single temporal patch: such a video carries no temporal
order, so no temporal signal exists for it (the caller marks its rows as having no T score). ``drop`` is listed among
the visual strategies because users pick it by the same name, but it is not a feature operation: it masks attention
at the video token positions, which the model adapter does (``videoktr.models.qwen2_5_vl``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from videoktr.core.registry import Registry
from videoktr.errors import UserError

__all__ = [
    "VISUAL_PERTURBATIONS",
    "TEMPORAL_PERTURBATIONS",
    "temporal_patch_rows",
    "permute_temporal_patches",
    "random_derangement_like",
    "shuffle_permutation",
    "reverse_permutation",
    "segment_shuffle_permutation",
    "apply_perturbation",
]

Features = tuple[torch.Tensor, ...]
Perturbation = Callable[..., tuple[torch.Tensor | None, ...]]

VISUAL_PERTURBATIONS: Registry[Perturbation] = Registry("visual perturbation")
TEMPORAL_PERTURBATIONS: Registry[Perturbation] = Registry("temporal perturbation")


def temporal_patch_rows(grid_thw: torch.Tensor, merge_size: int) -> list[tuple[int, int]]:
    """``(t, rows_per_patch)`` of every video. grid_thw: (V, 3) as ``(t, h, w)`` in vision patches."""
    if grid_thw.ndim != 2 or grid_thw.shape[-1] != 3:
        raise ValueError(f"grid_thw must have shape (V, 3), got {tuple(grid_thw.shape)}")
    out = []
    for t, h, w in grid_thw.tolist():
        if h % merge_size or w % merge_size:
            raise ValueError(f"grid (h={h}, w={w}) is not divisible by the spatial merge size {merge_size}")
        out.append((int(t), int(h * w) // merge_size**2))
    return out


def _check_features(features: Features, grid_thw: torch.Tensor, merge_size: int) -> list[tuple[int, int]]:
    shapes = temporal_patch_rows(grid_thw, merge_size)
    if len(features) != len(shapes):
        raise ValueError(f"{len(features)} feature tensors for {len(shapes)} videos in grid_thw")
    for v, (feat, (t, rows)) in enumerate(zip(features, shapes)):
        if feat.ndim != 2 or feat.shape[0] != t * rows:
            raise ValueError(
                f"video {v}: features {tuple(feat.shape)} do not match t={t} x {rows} rows per patch"
            )
    return shapes


def permute_temporal_patches(feat: torch.Tensor, t: int, perm: torch.Tensor) -> torch.Tensor:
    """Reorder the temporal patches of one video: output patch ``i`` is input patch ``perm[i]``.

    feat: (t * r, D); perm: (t,) long -> (t * r, D). Differentiable (an index_select on row blocks).
    """
    blocks = feat.reshape(t, feat.shape[0] // t, feat.shape[1])
    return blocks[perm.to(feat.device)].reshape_as(feat)


def random_derangement_like(t: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of ``range(t)`` that is never the identity (``t >= 2``).

    A uniform ``randperm`` is drawn; if it is the identity (probability ``1/t!``) it is rolled by one, which is a
    non-identity permutation. perm: (t,) long.
    """
    if t < 2:
        raise ValueError(f"a non-identity permutation needs at least 2 elements, got {t}")
    perm = torch.randperm(t, generator=generator)
    if torch.equal(perm, torch.arange(t)):
        perm = torch.roll(perm, 1)
    return perm


def shuffle_permutation(t: int, generator: torch.Generator) -> torch.Tensor | None:
    """Random non-identity order of ``t`` temporal patches; ``None`` when ``t == 1`` (no temporal order)."""
    return None if t < 2 else random_derangement_like(t, generator)


def reverse_permutation(t: int, generator: torch.Generator) -> torch.Tensor | None:
    """Patches in reverse order; ``None`` when ``t == 1``. ``generator`` is unused (deterministic)."""
    return None if t < 2 else torch.arange(t - 1, -1, -1)


def segment_shuffle_permutation(
    t: int, generator: torch.Generator, n_segments: int = 4
) -> torch.Tensor | None:
    """Split ``t`` patches into ``min(n_segments, t)`` contiguous segments (sizes differ by at most one, larger
    first, as ``torch.tensor_split``) and shuffle the segment order, never the identity. ``None`` when ``t == 1``.

    Example: t=8, n_segments=4 -> segments [0,1] [2,3] [4,5] [6,7]; order (2, 0, 3, 1) -> [4,5,0,1,6,7,2,3].
    """
    if n_segments < 2:
        raise UserError(
            f"segment_shuffle needs n_segments >= 2, got {n_segments}; set n_segments to 2 or more"
        )
    if t < 2:
        return None
    segments = torch.tensor_split(torch.arange(t), min(n_segments, t))
    order = random_derangement_like(len(segments), generator)
    return torch.cat([segments[i] for i in order.tolist()])


def _apply_temporal(
    perm_fn: Callable[..., torch.Tensor | None],
    features: Features,
    grid_thw: torch.Tensor,
    merge_size: int,
    generator: torch.Generator,
    **options,
) -> tuple[torch.Tensor | None, ...]:
    """Apply ``perm_fn`` to the temporal patches of every video (None when t == 1).

    A module-level function bound with ``functools.partial`` rather than a closure made at import time, so that
    mutation testing (docs/testing.md) can reach its body.
    """
    shapes = _check_features(features, grid_thw, merge_size)
    out: list[torch.Tensor | None] = []
    for feat, (t, _) in zip(features, shapes):
        perm = perm_fn(t, generator, **options)
        out.append(None if perm is None else permute_temporal_patches(feat, t, perm))
    return tuple(out)


TEMPORAL_PERTURBATIONS.add("shuffle", partial(_apply_temporal, shuffle_permutation))
TEMPORAL_PERTURBATIONS.add("reverse", partial(_apply_temporal, reverse_permutation))
TEMPORAL_PERTURBATIONS.add("segment_shuffle", partial(_apply_temporal, segment_shuffle_permutation))


@VISUAL_PERTURBATIONS.register("zero")
def zero_features(
    features: Features, grid_thw: torch.Tensor, merge_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Every feature of every video set to 0 (the paper's default ``v~ = 0``)."""
    _check_features(features, grid_thw, merge_size)
    return tuple(torch.zeros_like(feat) for feat in features)


@VISUAL_PERTURBATIONS.register("half")
def half_features(
    features: Features, grid_thw: torch.Tensor, merge_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Zero ``max(1, floor(t / 2))`` temporal patches of each video, chosen uniformly at random.

    Even ``t`` -> exactly half; odd ``t`` -> the smaller half (t=5 -> 2 patches); ``t == 1`` -> its single patch is
    zeroed (the same as ``zero`` for that video), so that every video still gets a visual signal.
    """
    shapes = _check_features(features, grid_thw, merge_size)
    out = []
    for feat, (t, rows) in zip(features, shapes):
        chosen = torch.randperm(t, generator=generator)[: max(1, t // 2)]
        keep = torch.ones(t, dtype=feat.dtype, device=feat.device)
        keep[chosen.to(feat.device)] = 0
        out.append(feat * keep.repeat_interleave(rows).unsqueeze(-1))
    return tuple(out)


@VISUAL_PERTURBATIONS.register("replace")
def replace_features(
    features: Features, grid_thw: torch.Tensor, merge_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Each video gets the features of another video of the batch with the same grid and different content,
    picked uniformly at random among those candidates. Copies of one video (the G completions of one prompt) are
    not "another video". Raises :class:`UserError` when a video has no such partner.
    """
    _check_features(features, grid_thw, merge_size)
    grids = [tuple(g) for g in grid_thw.tolist()]
    out = []
    for v, feat in enumerate(features):
        candidates = [
            u
            for u, other in enumerate(features)
            if grids[u] == grids[v] and other.shape == feat.shape and not torch.equal(other, feat)
        ]
        if not candidates:
            raise UserError(
                f"visual perturbation 'replace': video {v} (grid t,h,w={grids[v]}) has no other video with the same "
                "grid and different content in this batch; put at least two different prompts of the same video "
                "size in each batch, or use the visual perturbation 'zero'"
            )
        pick = candidates[int(torch.randint(len(candidates), (1,), generator=generator))]
        out.append(features[pick])
    return tuple(out)


@VISUAL_PERTURBATIONS.register("drop")
def drop_features(features: Features, grid_thw: torch.Tensor, merge_size: int, generator: torch.Generator):
    """Not a feature operation: ``drop`` masks attention at the video positions (the authors' code)."""
    raise ValueError(
        "visual perturbation 'drop' masks attention at the video token positions and is applied by the model "
        "adapter (videoktr.models.qwen2_5_vl.perturbed_logps), not to features"
    )


def apply_perturbation(
    registry: Registry[Perturbation],
    name: str,
    features: Features,
    grid_thw: torch.Tensor,
    merge_size: int,
    generator: torch.Generator,
    **options,
) -> tuple[torch.Tensor | None, ...]:
    """Look ``name`` up in ``registry`` (unknown names list the valid ones) and apply it."""
    return registry.get(name)(features, grid_thw, merge_size, generator, **options)
