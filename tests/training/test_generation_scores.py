"""``GenerationRecorder`` and ``fit_width`` (training/generation_scores.py) on hand-made generation steps: the
log-prob of the token sampled at each step (known at the next step, or from the completion for the last one) and the
entropy of each step's distribution, at the sampling temperature. Milliseconds; the tiny-model check that these equal
a teacher-forced forward is tests/training/test_selection_rows.py."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from videoktr.training.generation_scores import GenerationRecorder, fit_width

# 2 rows, vocabulary 3, 3 generation steps. Step k's raw logits of row i are LOGITS[k][i]; the generation feeds
# back the sampled token (row 0: 2, 0, 1; row 1: 1, 1, then EOS and padding).
LOGITS = [
    [[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]],
    [[3.0, 0.0, 0.0], [0.0, 2.0, 1.0]],
    [[0.5, 1.5, 0.5], [2.0, 2.0, 0.0]],
]
TOKENS = [[2, 0, 1], [1, 1]]


def log_softmax(row, temperature):
    z = [x / temperature for x in row]
    m = math.log(sum(math.exp(v) for v in z))
    return [v - m for v in z]


def run(recorder, prompt_len=4):
    """Feed the recorder the forwards of a generate call: a prefill, then one token per step."""
    ids = torch.full((2, prompt_len), 7)
    for k, step in enumerate(LOGITS):
        logits = torch.tensor(step).unsqueeze(1)  # (N, 1, V): the last position's logits
        if k == 0:  # the prefill holds every prompt position; only the last one's logits matter
            logits = torch.cat([torch.full((2, prompt_len - 1, 3), 9.0), logits], dim=1)
        recorder.hook(None, (), {"input_ids": ids}, SimpleNamespace(logits=logits))
        fed = [TOKENS[i][k] if k < len(TOKENS[i]) else 0 for i in range(2)]
        ids = torch.cat([ids, torch.tensor(fed).unsqueeze(1)], dim=1)
    return recorder.finish(TOKENS)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_log_probs_and_entropies_of_the_sampled_tokens(temperature):
    logps, entropies = run(GenerationRecorder(temperature))
    assert logps.shape == entropies.shape == (2, 3)
    for i in range(2):
        for k in range(3):
            lp = log_softmax(LOGITS[k][i], temperature)
            token = TOKENS[i][k] if k < len(TOKENS[i]) else 0  # past the end: token 0 (padding, never valid)
            assert logps[i, k].item() == pytest.approx(lp[token], abs=1e-6)
            assert entropies[i, k].item() == pytest.approx(-sum(math.exp(v) * v for v in lp), abs=1e-6)


def test_the_temperature_scales_the_logits():
    # step 0 of row 0 at temperature 0.5: logits (0, 1, 2) / 0.5 = (0, 2, 4) -> log p(2) = 4 - log(1 + e^2 + e^4)
    logps, _ = run(GenerationRecorder(0.5))
    assert logps[0, 0].item() == pytest.approx(4 - math.log(1 + math.exp(2) + math.exp(4)), abs=1e-6)


def test_low_precision_logits_are_scored_in_float32():
    recorder = GenerationRecorder(1.0)
    logits = torch.tensor([[[0.0, 1.0, 2.0]]], dtype=torch.bfloat16)
    recorder.hook(
        None, (), {"input_ids": torch.zeros(1, 1, dtype=torch.long)}, SimpleNamespace(logits=logits)
    )
    logps, entropies = recorder.finish([[2]])
    assert logps.dtype == entropies.dtype == torch.float32
    assert logps.item() == pytest.approx(2 - math.log(1 + math.e + math.e**2), abs=1e-6)


def test_a_forward_without_logits_or_ids_is_an_error():
    recorder = GenerationRecorder(1.0)
    with pytest.raises(
        RuntimeError, match="^ktr_full_logps=generation: the generation forward gave no logits / input_ids$"
    ):
        recorder.hook(None, (), {"input_ids": torch.zeros(1, 1)}, SimpleNamespace())
    with pytest.raises(RuntimeError, match="gave no logits"):
        recorder.hook(None, (), {}, SimpleNamespace(logits=torch.zeros(1, 1, 3)))
    with pytest.raises(RuntimeError, match="^ktr_full_logps=generation: no generation forward was recorded$"):
        recorder.finish([[1]])


def test_finish_resets_the_pending_step():
    recorder = GenerationRecorder(1.0)
    recorder.hook(
        None,
        (),
        {"input_ids": torch.zeros(1, 1, dtype=torch.long)},
        SimpleNamespace(logits=torch.zeros(1, 1, 3)),
    )
    recorder.finish([[0]])
    assert recorder.pending is None
    with pytest.raises(RuntimeError, match="no generation forward"):
        recorder.finish([[0]])


def test_fit_width_cuts_or_pads_with_zeros():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert fit_width(values, 2).tolist() == [[1.0, 2.0], [4.0, 5.0]]
    assert fit_width(values, 3).tolist() == values.tolist()
    assert fit_width(values, 5).tolist() == [[1.0, 2.0, 3.0, 0.0, 0.0], [4.0, 5.0, 6.0, 0.0, 0.0]]
