import math

import pytest
import torch

from videoktr.data.video import VideoSamplingConfig
from videoktr.frames.config import VoyagerConfig
from videoktr.frames.labels import (
    combination_frames,
    combinations_for,
    label_agreement,
    label_record,
    spearman,
)

SAMPLING = VideoSamplingConfig(num_frames=6, max_pixels=56 * 112)


def _candidate(tiny, sparse_data, record, cfg):
    from videoktr.data.prompts import build_question
    from videoktr.frames.features import decode_candidates, encode_candidates

    model, processor = tiny
    video = decode_candidates(
        sparse_data["root"] / record["path"], record["problem_id"], cfg.candidates, SAMPLING
    )
    return encode_candidates(model, processor, video, build_question(record, "short"), cfg.unit, SAMPLING)


def test_combinations_all_or_sampled_deterministic():
    assert combinations_for(4, 2, 10, 0, "r") == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    sampled = combinations_for(8, 3, 10, 0, "r")  # C(8,3)=56 > 10: sampled
    assert len(sampled) == 10 and len({tuple(c) for c in sampled}) == 10
    assert all(c == sorted(c) and len(c) == 3 for c in sampled)
    assert sampled == combinations_for(8, 3, 10, 0, "r")
    assert sampled != combinations_for(8, 3, 10, 1, "r")
    assert combination_frames([0, 2, 4, 6, 8, 10], [2, 0], 2) == [0, 2, 8, 10]


def test_spearman_hand_cases():
    assert spearman([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    # ties: ranks x = (0.5, 0.5, 2), y = (0, 1, 2): corr = 0.866...
    assert spearman([5, 5, 9], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)
    lines = [{"losses": [0.1, 2.0, 3.0], "sufficient": [True, False, False]},
             {"losses": [1.0, 1.0], "sufficient": [True, True]}]  # fmt: skip
    agreement = label_agreement(lines)
    assert agreement["n_records"] == 1 and agreement["best_is_sufficient"] == 1.0


def test_unit_features_of_a_combination_equal_its_own_vision_pass(tiny, sparse_data, sparse_records):
    """Why one vision pass per record is enough: a unit's features do not depend on the other frames."""
    from videoktr.data.video import decode_video
    from videoktr.models.qwen2_5_vl import build_video_inputs, encode_videos

    model, processor = tiny
    record = sparse_records[0][0]
    cfg = VoyagerConfig()
    candidate = _candidate(tiny, sparse_data, record, cfg)
    combo = [1, 4, 6]
    frames = combination_frames(candidate.video.frame_indices, combo, 2)
    video = decode_video(sparse_data["root"] / record["path"], SAMPLING, indices=frames)
    inputs = build_video_inputs(processor, ["q"], [video], sampling=SAMPLING)
    with torch.no_grad():
        (direct,) = encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
    sliced = candidate.unit_features[combo].reshape(-1, direct.shape[-1])
    torch.testing.assert_close(sliced, direct.float(), rtol=1e-5, atol=1e-5)


def _reference_target_logp(tiny, sparse_data, record, frames):
    """A plain forward of the SFT collator's example at ``frames``: log-probs (target tokens, V) and the target ids
    (target tokens,), without the end-of-turn tokens the collator also trains (labels do not score them)."""
    from videoktr.training.sft import SFTCollator

    model, processor = tiny
    collator = SFTCollator(processor, sparse_data["root"], SAMPLING, "short", cache_examples=False)
    batch = collator([{**record, "frame_indices": frames}])
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    labels = batch["labels"][0, 1:]
    keep = labels != -100
    end = len(collator.end_ids)
    return torch.log_softmax(logits[0, :-1].float(), -1)[keep][:-end], labels[keep][:-end]


def test_label_loss_equals_a_plain_teacher_forced_forward(tiny, sparse_data, sparse_records):
    model, processor = tiny
    record = sparse_records[0][0]
    cfg = VoyagerConfig(max_combinations=5)
    candidate = _candidate(tiny, sparse_data, record, cfg)
    line = label_record(model, processor, record, candidate, cfg, "short", SAMPLING)
    assert len(line["losses"]) == 5 and len(line["sufficient"]) == 5
    combo = line["combinations"][3]
    frames = combination_frames(candidate.video.frame_indices, combo, 2)
    # reference: the SFT collator's example for this record at these frames, loss summed over the target
    logp, gold = _reference_target_logp(tiny, sparse_data, record, frames)
    nll = -logp.gather(1, gold[:, None]).squeeze(1)
    assert line["losses"][3] == pytest.approx(float(nll.sum()), rel=1e-4, abs=1e-4)


def test_labels_deterministic_for_a_seed(tiny, sparse_data, sparse_records):
    model, processor = tiny
    record = sparse_records[0][1]
    cfg = VoyagerConfig(max_combinations=8, seed=5)
    candidate = _candidate(tiny, sparse_data, record, cfg)
    a = label_record(model, processor, record, candidate, cfg, "short", SAMPLING)
    b = label_record(
        model, processor, record, _candidate(tiny, sparse_data, record, cfg), cfg, "short", SAMPLING
    )
    assert a == b
    other = label_record(
        model, processor, record, candidate, VoyagerConfig(max_combinations=8, seed=6), "short", SAMPLING
    )
    assert other["combinations"] != a["combinations"]
    oracle = label_record(
        model,
        processor,
        record,
        candidate,
        VoyagerConfig(max_combinations=8, seed=5, label_source="oracle"),
        "short",
        SAMPLING,
    )
    assert oracle["losses"] == [0.0 if s else 1.0 for s in a["sufficient"]]


def test_option_nll_hand_computed():
    from videoktr.frames.labels import option_nll

    # one position for both alternatives: p(gold=1) = 0.25, p(2) = p(3) = 0.125 -> -log(0.25 / 0.5) = log 2
    logp = torch.full((1, 3, 4), -30.0)
    logp[0, 1] = torch.tensor([0.5, 0.25, 0.125, 0.125]).log()
    gold = torch.tensor([0, 1, 0])
    assert float(option_nll(logp, gold, [1, 1], [2, 3])[0]) == pytest.approx(math.log(2), abs=1e-6)
    # two positions: at 0, gold 0 (0.6) vs 1 (0.2): exp(-m) = 1/3; at 2, gold 0 (0.1) vs 3 (0.4): exp(-m) = 4
    logp[0, 0] = torch.tensor([0.6, 0.2, 0.1, 0.1]).log()
    logp[0, 2] = torch.tensor([0.1, 0.1, 0.4, 0.4]).log()
    assert float(option_nll(logp, gold, [0, 2], [1, 3])[0]) == pytest.approx(math.log(16 / 3), abs=1e-5)


def test_option_nll_label_equals_a_plain_forward(tiny, sparse_data, sparse_records):
    from videoktr.frames.labels import option_divergence

    model, processor = tiny
    record = sparse_records[0][0]
    cfg = VoyagerConfig(max_combinations=4, loss_form="option_nll")
    candidate = _candidate(tiny, sparse_data, record, cfg)
    line = label_record(model, processor, record, candidate, cfg, "short", SAMPLING)
    positions, tokens = option_divergence(processor, record)
    assert len(positions) == 3 and len(set(tokens)) == 3  # the three other colours' names
    combo = line["combinations"][2]
    frames = combination_frames(candidate.video.frame_indices, combo, 2)
    logp, gold = _reference_target_logp(tiny, sparse_data, record, frames)
    probs = logp.exp()
    p_gold = sum(float(probs[d, gold[d]]) for d in positions[:1])
    p_other = sum(float(probs[d, t]) for d, t in zip(positions, tokens))
    assert set(positions) == {positions[0]}  # the colour name is the first difference of every option
    assert line["losses"][2] == pytest.approx(-math.log(p_gold / (p_gold + p_other)), rel=1e-4, abs=1e-4)


def test_option_nll_refuses_records_without_options():
    from videoktr.errors import UserError
    from videoktr.frames.labels import option_divergence

    record = {
        "problem_id": "x",
        "process": "<think>a</think>",
        "solution": "<answer>7</answer>",
        "options": [],
    }
    with pytest.raises(UserError, match="x: loss_form=option_nll needs"):
        option_divergence(None, record)


def test_max_best_loss_prunes_records_no_combination_answers(tiny, sparse_data, sparse_records):
    model, processor = tiny
    record = sparse_records[0][0]
    cfg = VoyagerConfig(max_combinations=4, loss_form="option_nll", min_loss_spread=0.0)
    candidate = _candidate(tiny, sparse_data, record, cfg)
    line = label_record(model, processor, record, candidate, cfg, "short", SAMPLING)
    best = min(line["losses"])
    below = VoyagerConfig(
        max_combinations=4, loss_form="option_nll", min_loss_spread=0.0, max_best_loss=best - 1e-3
    )
    above = VoyagerConfig(
        max_combinations=4, loss_form="option_nll", min_loss_spread=0.0, max_best_loss=best + 1e-3
    )
    assert not label_record(model, processor, record, candidate, below, "short", SAMPLING)["kept"]
    assert label_record(model, processor, record, candidate, above, "short", SAMPLING)["kept"]
