"""``SelectionMixin`` (training/selection.py) on hand-built rollout batches and the fake model of ``hosts.py``:
which rows are scored, which inputs each counterfactual pass gets, the scores against ``core`` on the fake model's
values, the masks / soft weights / TW-GRPO weights placed back at their rows, the metrics and ``selection.jsonl``.
Written to kill the mutants of ``scripts/mutation.sh training/rollout`` (docs/testing.md); milliseconds per test.

The batch (``batch()``): 2 prompts x G = 2, prompt ids (1|2, V, V) with V the video placeholder, completions of 5,
3, 4 and 5 valid tokens. Prompt 0's video moves (its 2 temporal patches differ: a shuffle swaps them), prompt 1's is
static (identical patches: a shuffle changes nothing). Features = pixels (merge size 1, grid (2, 1, 2)).
"""

from __future__ import annotations

import json

import pytest
import torch

from videoktr import core
from videoktr.errors import UserError
from videoktr.training import selection
from videoktr.training.selection import SelectionMixin, _row_minmax, image_rows, take_rows

from .hosts import VIDEO_TOKEN, HostBase, code, fake_entropy, fake_logits, fake_logps, make_config

V = VIDEO_TOKEN
MOVING = torch.tensor(
    [[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [2.0, 2.0]]
)  # patch 0 = rows 0-1, patch 1 = rows 2-3
STATIC = torch.tensor([[1.0, 1.0], [2.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
SWAPPED = torch.cat([MOVING[2:], MOVING[:2]])  # the only derangement of 2 patches
COMPLETIONS = torch.tensor([[5, 7, 2, 9, 4], [6, 8, 1, 0, 0], [4, 6, 9, 5, 0], [7, 2, 6, 8, 1]])
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
GEN_LOGPS = -torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.7]] * 2 + [[0.2, 0.8, 0.4, 0.6, 0.15]] * 2)
GEN_ENTROPY = torch.tensor([[1.0, 3.0, 2.0, 5.0, 4.0]] * 2 + [[2.5, 0.5, 1.5, 3.5, 4.5]] * 2)


class Host(HostBase, SelectionMixin):
    pass


def host(tmp_path, group=2, **fields):
    return Host(make_config(tmp_path, **fields), group=group)


def batch(advantages=(1.0, -1.0, 1.0, -1.0), generation=True) -> dict:
    out = {
        "prompt_ids": torch.tensor([[1, V, V], [1, V, V], [2, V, V], [2, V, V]]),
        "prompt_mask": torch.ones(4, 3, dtype=torch.long),
        "completion_ids": COMPLETIONS.clone(),
        "completion_mask": MASK.clone(),
        "advantages": torch.tensor(advantages),
    }
    if generation:
        out["_generation_logps"], out["_generation_entropy"] = GEN_LOGPS.clone(), GEN_ENTROPY.clone()
    return out


def video() -> dict:
    return {
        "pixel_values_videos": [MOVING, MOVING, STATIC, STATIC],
        "video_grid_thw": torch.tensor([[2, 1, 2]] * 4),
        "second_per_grid_ts": torch.tensor([0.5, 0.5, 1.0, 1.0]),
    }


def inputs(rows=slice(None)):
    b = batch()
    ids = torch.cat([b["prompt_ids"], b["completion_ids"]], dim=1)[rows]
    mask = torch.cat([b["prompt_mask"], b["completion_mask"]], dim=1)[rows]
    return ids, mask


def perturbed_logps(features, rows=slice(None), attention=None, keep=None):
    """The fake model's log-probs of the batch's rows ``rows`` with ``features``."""
    ids, mask = inputs(rows)
    vid = take_rows(video(), torch.arange(4)[rows])
    return fake_logps(ids, mask if attention is None else attention, 5, features, vid, keep)


VALID = MASK.bool()


# ------------------------------------------------------------------------------------------------ helpers
def test_take_rows_indexes_tensors_and_lists():
    vid = {"a": [10, 11, 12], "b": torch.tensor([[0, 1], [2, 3], [4, 5]])}
    out = take_rows(vid, torch.tensor([2, 0]))
    assert out["a"] == [12, 10] and out["b"].tolist() == [[4, 5], [0, 1]]


def test_image_rows_takes_each_rows_images():
    # 3 rows with 1, 0 and 2 images; image j has grid (1, 1, j + 1) -> 1, 2, 3 pixel rows: rows 0 | - | 1-2, 3-5
    output = {
        "pixel_values": torch.arange(6.0).unsqueeze(1),
        "image_grid_thw": torch.tensor([[1, 1, 1], [1, 1, 2], [1, 1, 3]]),
        "num_images": [1, 0, 2],
        "mm_token_type_ids": torch.tensor([[0, 1], [0, 0], [1, 1]]),
    }
    out = image_rows(output, torch.tensor([2, 0]))
    # row 2: images 1, 2 (pixel rows 1..5); row 0: image 0 (pixel row 0)
    assert out["pixel_values"].flatten().tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 0.0]
    assert out["image_grid_thw"].tolist() == [[1, 1, 2], [1, 1, 3], [1, 1, 1]]
    assert out["num_images"] == [2, 1]
    assert out["mm_token_type_ids"].tolist() == [[1, 1], [0, 1]]
    empty = image_rows(output, torch.tensor([1]))  # a row without images
    assert empty["pixel_values"].shape == (0, 1) and empty["num_images"] == [0]
    assert image_rows({"pixel_values": None}, torch.tensor([0])) == {}
    for key in ("pixel_attention_mask", "spatial_shapes", "image_sizes", "num_tiles"):
        with pytest.raises(UserError, match=rf"^image inputs with \['{key}'\] are not supported by KTRTrainer's "
                                            r"selection \(Qwen2\.5-VL only\)$"):  # fmt: skip
            image_rows({**output, key: 1}, torch.tensor([0]))


def test_read_selection_records_skips_blank_lines(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert selection.read_selection_records(path) == [{"a": 1}, {"a": 2}]


def test_row_minmax_maps_each_row_to_0_1_and_a_flat_row_to_0():
    # row 0 valid (2, 4, 3) -> (0, 1, 0.5), padding 0; row 1 valid (7, 7) flat -> 0 (no signal);
    # row 2 one valid token -> 0
    scores = torch.tensor([[2.0, 4.0, 3.0, 100.0], [7.0, 7.0, -100.0, 0.0], [5.0, 9.0, 9.0, 9.0]])
    valid = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]]).bool()
    assert _row_minmax(scores, valid).tolist() == [[0, 1, 0.5, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    tiny = torch.tensor([[0.0, 1e-9, 2e-9]])  # a tiny span still spans [0, 1]
    assert torch.allclose(_row_minmax(tiny, torch.ones_like(tiny).bool()), torch.tensor([[0.0, 0.5, 1.0]]))


# -------------------------------------------------------------------------------------------- entry point
@pytest.mark.parametrize("method", ["grpo", "t_grpo"])
def test_methods_without_selection_attach_nothing(tmp_path, method):
    h, out = host(tmp_path, method=method), batch()
    h._attach_selection(out, video())
    assert not any(k.startswith("ktr_") for k in out) and not h._metrics["train"]


def test_rows_must_be_whole_groups(tmp_path):
    h = host(tmp_path)
    out = {k: v[:3] for k, v in batch().items()}
    with pytest.raises(UserError, match=r"^this process's generation batch has 3 rows, not whole groups of "
                                        r"num_generations=2; make per_device_train_batch_size \* steps_per_generation a "
                                        r"multiple of num_generations$"):  # fmt: skip
        h._attach_selection(out, take_rows(video(), torch.arange(3)))


def test_eval_mode_uses_the_eval_group_size(tmp_path):
    h = host(tmp_path)
    h.model.training = False  # G_eval = 3 does not divide 4 rows
    with pytest.raises(UserError, match="num_generations=3"):
        h._attach_selection(batch(), video())


def test_signals_refused_without_video(tmp_path):
    with pytest.raises(
        UserError,
        match=r"^the temporal signal needs video prompts; this batch has none \(drop it from ktr_signals\)$",
    ):
        host(tmp_path)._attach_selection(batch(), None)
    with pytest.raises(
        UserError, match="^the visual signal needs video or image prompts; this batch has text only$"
    ):
        host(tmp_path, ktr_signals=["visual"])._attach_selection(batch(), None)


def test_entropy_only_on_text_selects_the_top_tokens(tmp_path):
    # method entropy: scope batch (its default), fraction 0.2 of the 17 valid tokens -> k = ceil(3.4) = 4: the 4
    # highest generation entropies among valid tokens: 5.0 (row 0), 5.0 (row 1, pos 3 is padding: not it),
    # 4.5 (row 3) and 4.0 (row 0), 3.5 (row 3)... ranked: 5.0 r0p3, 4.5 r3p4, 4.0 r0p4, 3.5 r2p3, 3.5 r3p3
    # -> threshold 3.5, ties kept: 5 tokens
    h, out = host(tmp_path, method="entropy"), batch()
    h._attach_selection(out, None)
    expected = torch.zeros(4, 5, dtype=torch.bool)
    expected[0, 3] = expected[0, 4] = expected[3, 4] = expected[2, 3] = expected[3, 3] = True
    assert torch.equal(out["ktr_token_mask"], expected)
    assert h._metrics["train"]["ktr/selected_frac/entropy"] == [pytest.approx(5 / 17)]
    assert h._metrics["train"]["ktr/skipped_frac"] == [0.0]


def test_tool_mask_removes_tokens_from_the_candidates(tmp_path):
    h, out = host(tmp_path, method="entropy", ktr_entropy_fraction=1.0), batch()
    out["tool_mask"] = torch.ones(4, 5, dtype=torch.long)
    out["tool_mask"][0, :2] = 0  # the first 2 tokens of row 0 came from a tool
    h._attach_selection(out, None)
    assert torch.equal(out["ktr_token_mask"], VALID & out["tool_mask"].bool())


@pytest.mark.parametrize(
    "fields, exact",
    [
        ({}, True),
        ({"ktr_scope": "sequence"}, True),
        ({"ktr_scope": "batch"}, False),
        ({"ktr_mask_kl": True, "beta": 0.04}, False),
        ({"ktr_mask_kl": True, "beta": 0.0}, True),
        ({"ktr_mask_kl": False, "beta": 0.04}, True),
        ({"aggregation": "token-mean", "ktr_denominator": "selected"}, False),
        ({"aggregation": "token-mean", "ktr_denominator": "valid"}, True),
        ({"aggregation": "seq-mean-token-mean", "ktr_denominator": "selected"}, True),
        ({"ktr_skip_zero_advantage": False}, False),
    ],
)
def test_rows_to_score(tmp_path, fields, exact):
    # groups of 2: (0, 0) skipped, (1, 0) and (0, -1) scored (one non-zero advantage is enough)
    h = host(tmp_path, **fields)
    got = h._rows_to_score(torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, -1.0]), 2)
    assert got.tolist() == ([False, False, True, True, True, True] if exact else [True] * 6)


def test_skipped_groups_get_no_scores_and_the_metric_says_so(tmp_path):
    # prompt 0's advantages are 0: only rows 2, 3 are scored; ktr/skipped_frac = 2 / 4
    h, out = (
        host(tmp_path, method="entropy", ktr_scope="group", ktr_entropy_fraction=1.0),
        batch((0, 0, 1, -1)),
    )
    h._attach_selection(out, None)
    assert h._metrics["train"]["ktr/skipped_frac"] == [0.5]
    assert torch.equal(out["ktr_token_mask"], VALID & torch.tensor([0, 0, 1, 1]).bool().unsqueeze(1))


def test_every_group_skipped_gives_an_empty_mask_and_records(tmp_path):
    h, out = (
        host(tmp_path, method="entropy", ktr_scope="group", log_selected_examples=-1),
        batch((0, 0, 0, 0)),
    )
    h._attach_selection(out, None)
    assert out["ktr_token_mask"].dtype == torch.bool and not out["ktr_token_mask"].any()
    assert out["ktr_token_mask"].shape == (4, 5) and dict(h._metrics["train"]) == {"ktr/skipped_frac": [1.0]}
    records = selection.read_selection_records(tmp_path / "selection.jsonl")
    assert [r["skipped"] for r in records] == [True] * 4 and all(r["union"] is None for r in records)


def test_every_group_skipped_in_eval_writes_no_records(tmp_path):
    h, out = (
        host(tmp_path, method="entropy", ktr_scope="group", log_selected_examples=-1),
        batch((0, 0, 0, 0)),
    )
    h.model.training = False  # G_eval = 3 divides 6 rows
    out = {k: torch.cat([v, v[:2]]) for k, v in out.items()}
    h._attach_selection(out, None)
    assert not out["ktr_token_mask"].any() and not (tmp_path / "selection.jsonl").exists()
    assert h._metrics["eval"]["ktr/skipped_frac"] == [1.0] and not h._metrics["train"]


# ------------------------------------------------------------------------------------------ the KTR signals
def expected_scores(signed=False, visual="zero"):
    """Scores of every row (all scored) from the generation log-probs and the fake model's counterfactuals."""
    if visual == "zero":
        vis = perturbed_logps([torch.zeros_like(p) for p in video()["pixel_values_videos"]])
    else:
        vis = None
    tem = perturbed_logps([SWAPPED, SWAPPED, STATIC, STATIC])
    tem[2:] = GEN_LOGPS[2:]  # the static video: unmoved rows keep the real log-probs (shift exactly 0)
    out = {"entropy": GEN_ENTROPY, "temporal": core.logprob_shift(GEN_LOGPS, tem, signed=signed)}
    if vis is not None:
        out["visual"] = core.logprob_shift(GEN_LOGPS, vis, signed=signed)
    return out


def spy(h):
    seen = {}
    original = h._signal_scores

    def wrapped(*a):
        seen["scores"], seen["signal_valid"] = original(*a)
        return seen["scores"], seen["signal_valid"]

    h._signal_scores = wrapped
    return seen


@pytest.mark.parametrize("signed", [False, True])
def test_ktr_scores_and_mask_are_the_core_ones(tmp_path, signed):
    h, out = host(tmp_path, ktr_signed=signed), batch()
    seen = spy(h)
    h._attach_selection(out, video())
    scores = expected_scores(signed)
    assert set(seen["scores"]) == {"visual", "temporal", "entropy"}
    for name, value in scores.items():
        assert torch.allclose(seen["scores"][name], value, rtol=0, atol=1e-6), name
    assert torch.equal(seen["scores"]["temporal"][2:], torch.zeros(2, 5))  # static video: exactly 0
    # candidates: unsigned, fraction < 1: the moved tokens only; signed: every valid token
    moved = VALID & (scores["temporal"] != 0)
    assert torch.equal(seen["signal_valid"]["temporal"], VALID if signed else moved)
    assert torch.equal(seen["signal_valid"]["visual"], VALID if signed else VALID & (scores["visual"] != 0))
    assert "entropy" not in seen["signal_valid"]
    union, per_signal = core.key_token_mask(
        scores, VALID, {"visual": 0.2, "temporal": 0.2, "entropy": 0.2}, scope="group", group_size=2,
        signal_valid={"visual": VALID if signed else VALID & (scores["visual"] != 0),
                      "temporal": VALID if signed else moved},
    )  # fmt: skip
    assert torch.equal(out["ktr_token_mask"], union & VALID) and out["ktr_token_mask"].any()
    metrics = core.selection_metrics(union & VALID, per_signal, VALID, scores)
    for name, value in metrics.items():
        assert h._metrics["train"][name] == [pytest.approx(value)], name
    assert "ktr_token_weights" not in out


def test_full_fraction_keeps_unmoved_tokens(tmp_path):
    # r = 1 keeps every valid token, also the static video's unmoved ones (METHOD 2)
    h, out = host(tmp_path, ktr_signals=["temporal"], ktr_temporal_fraction=1.0), batch()
    seen = spy(h)
    h._attach_selection(out, video())
    assert torch.equal(seen["signal_valid"]["temporal"], VALID)
    assert torch.equal(out["ktr_token_mask"], VALID)


def test_intersection_and_sequence_scope_are_passed_on(tmp_path):
    fields = dict(ktr_combine="intersection", ktr_scope="sequence", ktr_signals=["entropy", "temporal"],
                  ktr_entropy_fraction=0.6, ktr_temporal_fraction=0.6)  # fmt: skip
    h, out = host(tmp_path, **fields), batch()
    h._attach_selection(out, video())
    scores = expected_scores()
    moved = VALID & (scores["temporal"] != 0)
    fractions = {"entropy": 0.6, "temporal": 0.6}
    union, per_signal = core.key_token_mask(
        {k: scores[k] for k in fractions}, VALID, fractions, scope="sequence", combine="intersection",
        signal_valid={"temporal": moved},
    )  # fmt: skip
    assert torch.equal(out["ktr_token_mask"], union) and union.any()
    other, _ = core.key_token_mask(
        {k: scores[k] for k in fractions}, VALID, fractions, scope="group", group_size=2, combine="union",
        signal_valid={"temporal": moved},
    )  # fmt: skip
    assert not torch.equal(union, other)  # the check can fail
    assert h._metrics["train"]["ktr/selected_frac/intersection"] == [pytest.approx(union.sum().item() / 17)]


def test_skipped_rows_are_scored_as_a_sub_batch(tmp_path):
    # prompt 0 skipped: rows 2, 3 scored alone; their mask is the core mask of those rows (group of 2), rows 0, 1
    # get none; the forward gets only rows 2, 3
    h, out = host(tmp_path, ktr_full_logps="forward", ktr_signals=["visual", "entropy"]), batch((0, 0, 1, -1))
    del out["_generation_logps"], out["_generation_entropy"]
    seen = spy(h)
    h._attach_selection(out, video())
    ids, mask = inputs(slice(2, 4))
    (call,) = h.logp_calls
    assert torch.equal(call["input_ids"], ids) and torch.equal(call["attention_mask"], mask)
    assert call["logits_to_keep"] == 5 and call["compute_entropy"] is True and call["batch_size"] is None
    assert torch.equal(call["video"]["second_per_grid_ts"], torch.tensor([1.0, 1.0]))
    assert [code([f]).item() for f in call["video_features"]] == [code([STATIC]).item()] * 2
    logp = fake_logps(ids, mask, 5, [STATIC, STATIC], take_rows(video(), torch.tensor([2, 3])))
    zero = perturbed_logps([torch.zeros(4, 2)] * 2, slice(2, 4))
    scores = {"visual": core.logprob_shift(logp, zero), "entropy": fake_entropy(ids, 5)}
    assert torch.allclose(seen["scores"]["visual"], scores["visual"], rtol=0, atol=1e-6)
    assert torch.equal(seen["scores"]["entropy"], scores["entropy"])
    union, _ = core.key_token_mask(scores, VALID[2:], {"visual": 0.2, "entropy": 0.2}, group_size=2,
                                   signal_valid={"visual": VALID[2:] & (scores["visual"] != 0)})  # fmt: skip
    assert not out["ktr_token_mask"][:2].any() and torch.equal(out["ktr_token_mask"][2:], union)


def test_forward_scores_without_entropy_skip_the_entropy(tmp_path):
    h, out = host(tmp_path, ktr_full_logps="forward", ktr_signals=["visual"], ktr_score_batch_size=3), batch()
    del out["_generation_logps"], out["_generation_entropy"]
    h._attach_selection(out, video())
    (call,) = h.logp_calls
    assert call["compute_entropy"] is False and call["batch_size"] == 3


@pytest.mark.parametrize("weighting", ["softmax", "linear"])
def test_soft_weights_of_the_max_of_the_normalised_signals(tmp_path, weighting):
    # skipped prompt 0 (advantages 0): weights 0 there; rows 2, 3: soft weights of max over signals of the per-row
    # min-max normalised scores. Row 2's temporal scores are flat (static video): normalised to 0, they leave the
    # visual/entropy maximum alone (normalised to 1, they would make every token of the row weigh the same)
    h, out = host(tmp_path, ktr_weighting=weighting), batch((0, 0, 1, -1))
    seen = spy(h)
    h._attach_selection(out, video())
    scores = seen["scores"]
    assert torch.equal(scores["temporal"], torch.zeros(2, 5))
    combined = torch.stack(
        [_row_minmax(scores[s], VALID[2:]) for s in ("visual", "temporal", "entropy")]
    ).amax(0)
    weights = out["ktr_token_weights"]
    assert weights.dtype == torch.float32 and "ktr_token_mask" not in out
    assert torch.equal(weights[:2], torch.zeros(2, 5))
    assert torch.allclose(weights[2:], core.soft_token_weights(combined, VALID[2:], weighting), atol=1e-6)
    assert not torch.allclose(weights[2], weights[2, 0].expand(5) * VALID[2])  # not flat
    assert h._metrics["train"]["ktr/skipped_frac"] == [0.5] and len(h._metrics["train"]) == 1


# ---------------------------------------------------------------------------------------- the counterfactuals
def test_drop_masks_the_video_positions_and_keeps_the_positions(tmp_path):
    h, out = (
        host(tmp_path, ktr_signals=["visual"], ktr_visual_perturbation="drop", ktr_visual_fraction=1.0),
        batch(),
    )
    seen = spy(h)
    h._attach_selection(out, video())
    ids, mask = inputs()
    dropped = mask.masked_fill(ids == V, 0)  # the 2 video positions of every prompt
    (call,) = h.forwards.named("token_logps")
    assert torch.equal(call["attention_mask"], dropped) and torch.equal(call["keep_positions"], mask)
    assert [code([f]).item() for f in call["features"]] == code(video()["pixel_values_videos"]).tolist()
    expected = core.logprob_shift(GEN_LOGPS, perturbed_logps(video()["pixel_values_videos"], attention=dropped,
                                                             keep=mask))  # fmt: skip
    assert torch.allclose(seen["scores"]["visual"], expected, rtol=0, atol=1e-6)
    assert call["batch_size"] is None and call["video"]["second_per_grid_ts"].tolist() == [0.5, 0.5, 1.0, 1.0]


def test_zero_has_no_position_override(tmp_path):
    h = host(tmp_path, ktr_signals=["visual"], ktr_score_batch_size=2)
    h._attach_selection(batch(), video())
    (call,) = h.forwards.named("token_logps")
    assert call["keep_positions"] is None and call["batch_size"] == 2
    assert torch.equal(call["attention_mask"], inputs()[1])
    assert all(torch.equal(f, torch.zeros(4, 2)) for f in call["features"])


@pytest.mark.parametrize("draw", ["prompt", "row"])
def test_perturbation_draws(tmp_path, draw):
    # half: half of each video's 2 temporal patches zeroed, drawn once per prompt (rows 0, 1 share one draw) or
    # per row; rows whose features changed are the ones that got a perturbation
    h = host(tmp_path, ktr_visual_perturbation="half", ktr_perturbation_draw=draw, group=2)
    feats = tuple(p.clone() for p in [MOVING, MOVING, MOVING, MOVING])
    vid = {"video_grid_thw": torch.tensor([[2, 1, 2]] * 4)}
    seen = []
    for seed in range(8):
        h._ktr_generator.manual_seed(seed)
        out, ok = h._perturbed_features(feats, vid, "visual", group=2)
        assert ok.tolist() == [True] * 4 and len(out) == 4
        assert all(not torch.equal(o, f) for o, f in zip(out, feats))  # half of 2 patches: one zeroed
        seen.append([torch.equal(out[0], out[1]), torch.equal(out[2], out[3])])
    pairs = {tuple(s) for s in seen}
    assert pairs == {(True, True)} if draw == "prompt" else (False, False) in pairs or (True, False) in pairs


def test_segment_shuffle_gets_the_segment_count(tmp_path, monkeypatch):
    h = host(tmp_path, ktr_temporal_perturbation="segment_shuffle", ktr_segments=3)
    got = {}

    def fake(registry, name, reps, grid, merge, generator, **options):
        got.update(name=name, n=len(reps), grid=grid.tolist(), merge=merge, options=options)
        return tuple(None if k == 0 else r + 1 for k, r in enumerate(reps))

    monkeypatch.setattr(selection, "apply_perturbation", fake)
    feats = tuple(torch.full((4, 2), float(k)) for k in range(4))
    grid = torch.tensor([[2, 1, 2], [2, 1, 2], [4, 1, 1], [4, 1, 1]])
    out, ok = h._perturbed_features(feats, {"video_grid_thw": grid}, "temporal", group=2)
    assert got == dict(
        name="segment_shuffle", n=2, grid=[[2, 1, 2], [4, 1, 1]], merge=1, options={"n_segments": 3}
    )
    # prompt 0's draw is None (not perturbable): its rows keep their features and are not ok
    assert ok.tolist() == [False, False, True, True]
    assert [o[0, 0].item() for o in out] == [
        0.0,
        1.0,
        3.0,
        3.0,
    ]  # prompt 1's draw (features 2 + 1) for both rows
    h.args.ktr_temporal_perturbation = "shuffle"
    h._perturbed_features(feats, {"video_grid_thw": grid}, "temporal", group=2)
    assert got["name"] == "shuffle" and got["options"] == {}
    h.args.ktr_visual_perturbation = "replace"
    h._perturbed_features(feats, {"video_grid_thw": grid}, "visual", group=2)
    assert got["name"] == "replace" and got["options"] == {}


def test_frame_level_temporal_uses_the_shuffled_pixels(tmp_path):
    h, out = host(tmp_path, ktr_signals=["temporal"], ktr_temporal_level="frame"), batch()
    vid = {**video(), "pixel_values_videos_shuffled": [MOVING * 2] * 2 + [STATIC] * 2}
    seen = spy(h)
    h._attach_selection(out, vid)
    assert len(h.feature_calls) == 2
    assert all(torch.equal(a, b) for a, b in zip(h.feature_calls[1][0], vid["pixel_values_videos_shuffled"]))
    assert torch.equal(h.feature_calls[1][1], vid["video_grid_thw"])
    tem = perturbed_logps([MOVING * 2] * 2 + [STATIC] * 2)
    tem[2:] = GEN_LOGPS[2:]  # the re-encoded static video equals the real one: unmoved
    assert torch.allclose(seen["scores"]["temporal"], core.logprob_shift(GEN_LOGPS, tem), rtol=0, atol=1e-6)


@pytest.mark.parametrize("distance", ["kl", "l1"])
def test_distances_compare_whole_distributions_per_group(tmp_path, distance):
    # per group of 2 rows: the real logits (features) and the perturbed ones (zero), both at temperature 0.7,
    # with that group's video rows; score = core.distribution_shift(real, perturbed, distance)
    h = host(tmp_path, ktr_signals=["visual"], ktr_distance=distance)
    seen = spy(h)
    h._attach_selection(batch(), video())
    calls = h.forwards.named("full_logits")
    assert len(calls) == 4  # (real, perturbed) x 2 groups
    ids, mask = inputs()
    vid = video()
    real = fake_logits(ids, mask, 5, vid["pixel_values_videos"], vid, temperature=0.7)
    zero = fake_logits(ids, mask, 5, [torch.zeros(4, 2)] * 4, vid, temperature=0.7)
    expected = core.distribution_shift(real, zero, distance)
    assert torch.allclose(seen["scores"]["visual"], expected, rtol=1e-5, atol=1e-6)
    assert all(c["temperature"] == 0.7 for c in calls) and calls[1]["keep_positions"] is None
    assert [c["video"]["second_per_grid_ts"].tolist() for c in calls] == [[0.5, 0.5]] * 2 + [[1.0, 1.0]] * 2


def test_drop_with_a_distance_keeps_each_groups_positions(tmp_path):
    h = host(tmp_path, ktr_signals=["visual"], ktr_distance="l2", ktr_visual_perturbation="drop")
    seen = spy(h)
    h._attach_selection(batch(), video())
    ids, mask = inputs()
    calls = h.forwards.named("full_logits")
    assert torch.equal(calls[1]["keep_positions"], mask[:2]) and torch.equal(
        calls[3]["keep_positions"], mask[2:]
    )
    dropped = mask.masked_fill(ids == V, 0)
    assert torch.equal(calls[3]["attention_mask"], dropped[2:]) and torch.equal(
        calls[2]["attention_mask"], mask[2:]
    )
    vid = video()
    real = fake_logits(ids, mask, 5, vid["pixel_values_videos"], vid, temperature=0.7)
    other = fake_logits(ids, dropped, 5, vid["pixel_values_videos"], vid, temperature=0.7)
    assert torch.allclose(seen["scores"]["visual"], core.distribution_shift(real, other, "l2"), atol=1e-6)


# ------------------------------------------------------------------------------------------- image prompts
def image_batch():
    out = batch()
    out["prompt_ids"] = torch.tensor([[1, 8, 8], [1, 8, 8], [2, 2, 2], [2, 2, 2]])  # rows 2, 3: no image
    out["pixel_values"] = torch.arange(1.0, 9.0).view(4, 2)  # one image of 2 patch rows for each of rows 0, 1
    out["image_grid_thw"] = torch.tensor([[1, 1, 2], [1, 1, 2]])
    out["num_images"] = [1, 1, 0, 0]
    out["mm_token_type_ids"] = torch.tensor([[0, 1, 1] + [0] * 5] * 2 + [[0] * 8] * 2)  # prompt + completion
    return out


@pytest.mark.parametrize("perturbation", ["zero", "drop"])
def test_image_visual_signal(tmp_path, perturbation):
    h = host(tmp_path, ktr_signals=["visual"], ktr_visual_perturbation=perturbation)
    out = image_batch()
    seen = spy(h)
    h._attach_selection(out, None)
    (feats,) = h.forwards.named("image_features")
    assert feats["inner"] == ("inner", h.model) and torch.equal(feats["pixel_values"], out["pixel_values"])
    (call,) = h.forwards.named("image_token_logps")
    ids, mask = inputs()
    image_mask = torch.zeros(4, 8, dtype=torch.long)
    image_mask[:2, 1:3] = 1
    if perturbation == "drop":
        attention, keep, perturbed = mask.masked_fill(image_mask == 1, 0), mask, out["pixel_values"]
    else:
        attention, keep, perturbed = mask, None, torch.zeros(4, 2)
    assert isinstance(call["perturbed"], tuple) and len(call["perturbed"]) == 2  # one image per row 0, 1
    assert torch.equal(call["attention_mask"], attention) and torch.equal(
        torch.cat(call["perturbed"]), perturbed
    )
    assert (call["keep_positions"] is None) if keep is None else torch.equal(call["keep_positions"], keep)
    assert call["image"]["num_images"] == [1, 1, 0, 0]
    logp_p = fake_logps(ids, attention, 5, [perturbed.flatten()] * 4, None, keep)
    assert torch.allclose(seen["scores"]["visual"], core.logprob_shift(GEN_LOGPS, logp_p), atol=1e-6)
    # rows 2, 3 hold no image: no candidate token (unsigned, fraction < 1 -> also the unmoved tokens dropped)
    rows_ok = torch.tensor([True, True, False, False]).unsqueeze(1)
    shifted = seen["scores"]["visual"]
    assert torch.equal(seen["signal_valid"]["visual"], VALID & rows_ok & (shifted != 0))


def test_image_prompts_refuse_distances(tmp_path):
    h = host(tmp_path, ktr_signals=["visual"], ktr_distance="kl")
    with pytest.raises(UserError, match=r"^ktr_distance='kl' is implemented for video prompts; for image prompts use "
                                        r"ktr_distance: logprob$"):  # fmt: skip
        h._attach_selection(image_batch(), None)


# ----------------------------------------------------------------------------------------------- TW-GRPO
def test_tw_weights_per_group_and_skipped_groups(tmp_path):
    # tw_weight_grad false: per active group, core.tw_token_weights of that group's logits (temperature 0.7),
    # skipped group: its valid mask (any weight gives the same loss); metric: mean weight over active valid tokens
    h, out = host(tmp_path, method="tw_grpo", tw_weight_grad=False, tw_alpha=2.0), batch((0, 0, 1, -1))
    h._attach_selection(out, video())
    ids, mask = inputs()
    vid = video()
    logits = fake_logits(ids, mask, 5, vid["pixel_values_videos"], vid, temperature=0.7)
    expected = core.tw_token_weights(logits[2:], VALID[2:], group_size=2, alpha=2.0)
    weights = out["ktr_token_weights"]
    assert torch.equal(weights[:2], VALID[:2].float()) and torch.allclose(weights[2:], expected, atol=1e-6)
    assert len(h.forwards.named("full_logits")) == 1  # the skipped group is not scored
    assert h._metrics["train"]["tw/weight_mean"] == [pytest.approx(expected[VALID[2:]].mean().item())]
    assert h._metrics["train"]["ktr/skipped_frac"] == [0.5]
    assert not torch.allclose(expected[VALID[2:]], torch.ones(1))  # weights really vary


def test_tw_weights_of_images_and_of_every_group(tmp_path):
    h, out = host(tmp_path, method="tw_grpo", tw_weight_grad=False), image_batch()
    h._attach_selection(out, None)
    calls = h.forwards.named("full_logits")
    assert len(calls) == 2 and calls[0]["video"] is None and calls[0]["features"] is None
    assert calls[0]["image_kwargs"]["num_images"] == [1, 1] and calls[1]["image_kwargs"]["num_images"] == [
        0,
        0,
    ]
    ids, mask = inputs()
    logits = fake_logits(ids, mask, 5, temperature=0.7)
    expected = torch.cat(
        [core.tw_token_weights(logits[k : k + 2], VALID[k : k + 2], 2, alpha=1.7) for k in (0, 2)]
    )
    assert torch.allclose(out["ktr_token_weights"], expected, atol=1e-6)


def test_tw_weights_when_every_group_is_skipped(tmp_path):
    h, out = host(tmp_path, method="tw_grpo", tw_weight_grad=False), batch((0, 0, 0, 0))
    h._attach_selection(out, video())
    assert torch.equal(out["ktr_token_weights"], VALID.float())
    (mean,) = h._metrics["train"]["tw/weight_mean"]
    assert mean != mean  # NaN: no token was weighted


def test_tw_with_gradient_leaves_the_weights_to_the_loss(tmp_path):
    h, out = host(tmp_path, method="tw_grpo"), batch()
    h._attach_selection(out, video())
    assert "ktr_token_weights" not in out and not h.forwards.calls
    assert h._metrics["train"]["ktr/skipped_frac"] == [0.0]


# ---------------------------------------------------------------------------------------- selection.jsonl
def test_selection_records(tmp_path):
    # every row; prompt 0 skipped; this process is rank 1 of 2 -> its rows are global rows 4..7, groups 2, 3
    h, out = host(tmp_path, ktr_signals=["entropy"], log_selected_examples=-1), batch((0, 0, 1, -1))
    h.accelerator.process_index = 1
    h._rollout_problem_ids = ["p0", "p0", "p1", "p1"]
    h.state.global_step = 0
    h._attach_selection(out, None)
    records = selection.read_selection_records(tmp_path / "selection.jsonl")
    assert [r["group_id"] for r in records] == [2, 2, 3, 3]
    assert [r["problem_id"] for r in records] == ["p0", "p0", "p1", "p1"]
    assert [r["skipped"] for r in records] == [True, True, False, False]
    assert [r["advantage"] for r in records] == [0.0, 0.0, 1.0, -1.0]
    assert [r["completion_ids"] for r in records] == [
        [5, 7, 2, 9, 4],
        [6, 8, 1],
        [4, 6, 9, 5],
        [7, 2, 6, 8, 1],
    ]
    assert all(r["version"] == 1 and r["step"] == 0 for r in records)
    assert records[0]["union"] is None and records[0]["scores"] == {} and records[0]["masks"] == {}
    mask = out["ktr_token_mask"]
    assert records[2]["union"] == mask[2, :4].tolist() and records[3]["union"] == mask[3].tolist()
    assert records[2]["masks"] == {"entropy": mask[2, :4].tolist()}
    assert records[2]["scores"] == {"entropy": pytest.approx(GEN_ENTROPY[2, :4].tolist())}
    # a later step appends; a new run at step 0 starts the file again
    h.state.global_step, h._rollout_problem_ids = 3, None
    h._attach_selection(batch(), None)
    records = selection.read_selection_records(tmp_path / "selection.jsonl")
    assert len(records) == 8 and records[4]["step"] == 3 and records[4]["problem_id"] is None
    assert json.loads((tmp_path / "selection.jsonl").read_text().splitlines()[0])["step"] == 0


def test_selection_records_limit_and_fresh_file(tmp_path):
    (tmp_path / "selection.jsonl").write_text('{"old": 1}\n')
    h = host(tmp_path, ktr_signals=["entropy"], log_selected_examples=3)
    h._attach_selection(batch(), None)
    records = selection.read_selection_records(tmp_path / "selection.jsonl")
    assert [r["group_id"] for r in records] == [
        0,
        0,
        1,
    ]  # the first 3 rows; a run at step 0 starts a new file
    h._attach_selection(batch(), None)  # same run, still step 0: appends
    assert len(selection.read_selection_records(tmp_path / "selection.jsonl")) == 6
    h.args.log_selected_examples = 10  # more than the rows: every row
    h._attach_selection(batch(), None)
    assert len(selection.read_selection_records(tmp_path / "selection.jsonl")) == 10


def test_selection_records_off_and_on_other_processes(tmp_path):
    h = host(tmp_path, ktr_signals=["entropy"])  # log_selected_examples 0 (default)
    h._attach_selection(batch(), None)
    assert not (tmp_path / "selection.jsonl").exists()
    h.args.log_selected_examples = -1
    h.accelerator.is_main_process = False
    h._attach_selection(batch(), None)
    assert not (tmp_path / "selection.jsonl").exists()


def test_selection_records_go_into_a_new_output_dir(tmp_path):
    h = host(tmp_path / "new" / "dir", ktr_signals=["entropy"], log_selected_examples=1)
    h._attach_selection(batch(), None)
    assert len(selection.read_selection_records(tmp_path / "new" / "dir" / "selection.jsonl")) == 1


# ------------------------------------------------------------------------------------------------ more edges
def test_random_perturbations_draw_from_the_trainers_generator(tmp_path):
    # the same seed gives the same draw, and the draw advances the trainer's generator (a draw from torch's global
    # generator would do neither)
    h = host(tmp_path, ktr_visual_perturbation="half")
    feats = (MOVING, MOVING, STATIC, STATIC)
    vid = {"video_grid_thw": torch.tensor([[2, 1, 2]] * 4)}
    draws = []
    for _ in range(2):
        h._ktr_generator.manual_seed(5)
        before = h._ktr_generator.get_state().clone()
        out, _ = h._perturbed_features(feats, vid, "visual", group=2)
        assert not torch.equal(before, h._ktr_generator.get_state())
        torch.manual_seed(len(draws))  # the global generator differs between the two draws
        draws.append(out)
    assert all(torch.equal(a, b) for a, b in zip(*draws))


def test_image_draws_use_the_trainers_generator(tmp_path):
    h = host(tmp_path, ktr_signals=["visual"], ktr_visual_perturbation="replace")
    out = image_batch()
    before = h._ktr_generator.get_state().clone()
    h._attach_selection(out, None)
    assert not torch.equal(before, h._ktr_generator.get_state())


def test_signed_image_scores(tmp_path):
    h = host(tmp_path, ktr_signals=["visual"], ktr_signed=True)
    out = image_batch()
    seen = spy(h)
    h._attach_selection(out, None)
    ids, mask = inputs()
    logp_p = fake_logps(ids, mask, 5, [torch.zeros(4, 2).flatten()] * 4)
    assert torch.allclose(
        seen["scores"]["visual"], core.logprob_shift(GEN_LOGPS, logp_p, signed=True), atol=1e-6
    )
    assert (seen["scores"]["visual"] < 0).any()  # signed: not the absolute value


def test_image_forward_scores_get_the_image_inputs(tmp_path):
    h = host(tmp_path, ktr_signals=["visual"], ktr_full_logps="forward")
    out = image_batch()
    del out["_generation_logps"], out["_generation_entropy"]
    h._attach_selection(out, None)
    (call,) = h.logp_calls
    assert torch.equal(call["pixel_values"], out["pixel_values"]) and call["num_images"] == [1, 1, 0, 0]
    assert torch.equal(call["image_grid_thw"], out["image_grid_thw"]) and call["video"] is None


def test_distances_with_fewer_positions_than_rows(tmp_path):
    # completions cut to 3 positions (T = 3 < N = 4 rows): each group's passes still get that group's rows
    h = host(tmp_path, ktr_signals=["visual"], ktr_distance="l1")
    out = batch()
    for key in ("completion_ids", "completion_mask", "_generation_logps", "_generation_entropy"):
        out[key] = out[key][:, :3]
    h._attach_selection(out, video())
    calls = h.forwards.named("full_logits")
    assert [c["input_ids"].size(0) for c in calls] == [2, 2, 2, 2]


def test_tw_weights_of_every_video_group(tmp_path):
    h, out = host(tmp_path, method="tw_grpo", tw_weight_grad=False), batch()
    h._attach_selection(out, video())
    ids, mask = inputs()
    vid = video()
    logits = fake_logits(ids, mask, 5, vid["pixel_values_videos"], vid, temperature=0.7)
    expected = torch.cat(
        [core.tw_token_weights(logits[k : k + 2], VALID[k : k + 2], 2, alpha=1.7) for k in (0, 2)]
    )
    assert torch.allclose(out["ktr_token_weights"], expected, atol=1e-6)
    assert [c["input_ids"].size(0) for c in h.forwards.named("full_logits")] == [2, 2]
    assert len(h.feature_calls) == 1  # one vision pass for the batch


@pytest.mark.parametrize("processes", [1, 2])
def test_selection_records_of_every_process(tmp_path, monkeypatch, processes):
    # 2 processes: the main process writes every process's records (gather_object); 1 process: its own
    import accelerate.utils

    gathered = []

    def gather_object(records):
        gathered.append(records)
        return records + [{"other": "rank"}]

    monkeypatch.setattr(accelerate.utils, "gather_object", gather_object)
    h = host(tmp_path, ktr_signals=["entropy"], log_selected_examples=1)
    h.accelerator.num_processes = processes
    h._attach_selection(batch(), None)
    records = selection.read_selection_records(tmp_path / "selection.jsonl")
    if processes == 1:
        assert not gathered and len(records) == 1
    else:
        assert len(gathered) == 1 and gathered[0][0]["group_id"] == 0 and records[1] == {"other": "rank"}


@pytest.mark.parametrize("weighting", ["linear", "exponential", "softmax", "sigmoid"])
def test_a_row_flat_in_every_signal_weighs_every_token_1(tmp_path, weighting):
    # row 0's entropies all 2.0: _row_minmax maps it to 0, core.soft_token_weights maps the flat combined row to
    # weight 1 on each of its 5 valid tokens; row 2's (2.5, 0.5, 1.5, 3.5) get unequal weights
    h, out = host(tmp_path, ktr_signals=["entropy"], ktr_weighting=weighting), batch()
    out["_generation_entropy"][0] = 2.0
    h._attach_selection(out, None)
    weights = out["ktr_token_weights"]
    assert torch.allclose(weights[0], torch.ones(5))
    assert torch.allclose(weights[VALID].sum(), torch.tensor(17.0))  # mean 1 over each row's valid tokens
    assert not torch.allclose(weights[2, :4], torch.ones(4))


def test_gathered_means_are_taken_in_float32(tmp_path):
    # 2 processes holding 1.0 and 1.0078125 (neighbouring bfloat16 values): the mean 1.00390625 is exact in float32,
    # a bfloat16 mean would round it to one of them
    h = host(tmp_path)
    h.accelerator.gather = lambda v: torch.cat([v, torch.tensor([1.0078125], dtype=v.dtype)])
    assert h._gathered_mean(torch.tensor(1.0, dtype=torch.bfloat16)) == 1.00390625
    assert h._gathered_mean(1.0) == 1.00390625
