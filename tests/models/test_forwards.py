"""``QwenVLForwards``: the trainer's model-specific forwards agree with the adapter's reference passes, and the
``drop`` counterfactual keeps the video's M-RoPE positions."""

from __future__ import annotations

import pytest
import torch
from trl.trainer.utils import add_fused_lm_head

from videoktr.models import qwen2_5_vl as q
from videoktr.models.forwards import QwenVLForwards
from videoktr.models.tiny import load_model_and_processor

TOL = 1e-5


@pytest.fixture(scope="module")
def fused(tiny_dir):
    """A tiny model with TRL's fused LM head (as KTRTrainer's policy has), its processor and the forwards."""
    model, processor = load_model_and_processor(tiny_dir)
    model.eval()
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    return model, processor, QwenVLForwards(model.config, processor)


def _batch(processor, video):
    inputs = q.build_video_inputs(processor, ["a", "b"], [video(0), video(1)])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(20, 400, (2, 5), generator=g)
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[0, 3:] = 0
    grid = inputs["video_grid_thw"]
    rows = {
        "pixel_values_videos": list(torch.split(inputs["pixel_values_videos"], grid.prod(-1).tolist())),
        "video_grid_thw": grid,
        "second_per_grid_ts": torch.as_tensor(inputs["second_per_grid_ts"], dtype=torch.float32),
    }
    input_ids = torch.cat([inputs["input_ids"], ids], 1)
    attention = torch.cat([inputs["attention_mask"], mask], 1)
    return inputs, ids, mask, rows, input_ids, attention


def test_token_logps_with_features_match_the_reference_pass(fused, video):
    model, processor, fw = fused
    inputs, ids, mask, rows, input_ids, attention = _batch(processor, video)
    with torch.no_grad():
        feats = fw.video_features(model, rows["pixel_values_videos"], rows["video_grid_thw"])
        logp, entropy = fw.token_logps(model, input_ids, attention, 5, rows, feats, compute_entropy=True)
        pixels, _ = fw.token_logps(model, input_ids, attention, 5, rows, None, batch_size=1)
        ref = q.completion_logps(model, inputs, ids, mask, feats, with_entropy=True)
    valid = mask.bool()
    assert (logp - ref["logp"])[valid].abs().max() <= TOL
    assert (entropy - ref["entropy"])[valid].abs().max() <= TOL
    assert (pixels - ref["logp"])[valid].abs().max() <= TOL  # vision tower inside the forward, row by row


def test_drop_keeps_the_original_positions(fused, video):
    model, processor, fw = fused
    inputs, ids, mask, rows, input_ids, attention = _batch(processor, video)
    dropped = attention.masked_fill(input_ids == fw.video_token_id, 0)
    with torch.no_grad():
        feats = fw.video_features(model, rows["pixel_values_videos"], rows["video_grid_thw"])
        kept, _ = fw.token_logps(model, input_ids, dropped, 5, rows, feats, keep_positions=attention)
        moved, _ = fw.token_logps(model, input_ids, dropped, 5, rows, feats)  # the old pass: positions move
        ref = q.perturbed_logps(model, inputs, ids, mask, feats, "visual", "drop", torch.Generator())
        logits = fw.full_logits(model, input_ids, dropped, 5, rows, feats, keep_positions=attention)
    valid = mask.bool()
    assert (kept - ref["logp"])[valid].abs().max() <= TOL
    assert (moved - ref["logp"])[valid].abs().max() > 1e-4
    from_logits = torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
    assert (from_logits - ref["logp"])[valid].abs().max() <= TOL
    # the completion's positions: those of the full sequence, not those of the shortened one
    full = fw.positions(model, input_ids, rows, attention)[:, :, -5:]
    short = fw.positions(model, input_ids, rows, dropped)[:, :, -5:]
    assert not torch.equal(full, short)
