"""What the querier sees, from the video LLM itself: per-unit vision features and the question's token embeddings.

One vision-tower call encodes the M candidate frames of a record. Qwen2.5-VL's vision tower attends only within a
temporal patch (2 frames = one selection unit), so the features of a unit do not depend on the other candidates:
the features of any T-frame combination are the rows of its units (tested), and labelling a record costs one
vision pass however many combinations it scores.

Shapes: n = M / unit candidate units, S = h*w/merge**2 LM tokens per unit, D the LM hidden size.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from videoktr.errors import UserError

__all__ = [
    "CandidateVideo",
    "candidate_indices",
    "decode_candidates",
    "encode_candidates",
    "model_fingerprint",
]


@dataclass
class CandidateVideo:
    """The M candidate frames of one record and their vision features."""

    video: object  # DecodedVideo with M frames
    unit_features: torch.Tensor | None  # (n, S, D): LM-space features of each unit (None once dropped)
    query_embeddings: torch.Tensor  # (L, D): the question's token embeddings (frozen)
    _pooled: torch.Tensor | None = None

    def pooled(self) -> torch.Tensor:
        """(n, 2D): mean and max over each unit's tokens (the querier's frame descriptor)."""
        if self._pooled is None:
            self._pooled = torch.cat([self.unit_features.mean(1), self.unit_features.amax(1)], dim=-1)
        return self._pooled

    def compact(self) -> CandidateVideo:
        """Keep only what the querier needs (pooled features, question): a 7B's token features of a whole
        dataset do not fit in memory, its pooled ones do."""
        self.pooled()
        self.unit_features = None
        self.video.frames = self.video.frames[:0]
        return self


def candidate_indices(total_frames: int, candidates: int, record_id: str) -> list[int]:
    """M frame indices spread uniformly over the video; refuses a video with fewer than M frames."""
    from videoktr.data.video import uniform_indices

    if total_frames < candidates:
        raise UserError(
            f"record {record_id}: its video has {total_frames} frames, fewer than M={candidates} candidates; "
            f"lower --candidates to at most {total_frames // 2 * 2} or drop the record"
        )
    return uniform_indices(total_frames, candidates)


def decode_candidates(path: str | Path, record_id: str, candidates: int, sampling):
    """Decode the M candidate frames of a record's video (a ``DecodedVideo`` with M frames)."""
    from videoktr.data.video import decode_video, read_frame_count

    total = read_frame_count(path)
    return decode_video(path, sampling, indices=candidate_indices(total, candidates, record_id))


def query_text(record: dict, cfg, template: str) -> str:
    """The text the querier reads for ``record`` (``cfg.query``: the question alone, or the whole prompt)."""
    from videoktr.data.prompts import build_question

    if cfg.query == "question":
        return str(record.get("problem") or "")
    return build_question(record, template)


@torch.no_grad()
def encode_candidates(model, processor, video, question: str, unit: int, sampling=None) -> CandidateVideo:
    """One vision pass over ``video`` (M frames) and the embeddings of ``question``'s tokens."""
    from videoktr.models.qwen2_5_vl import build_video_inputs, encode_videos, find_vl_model

    tps = int(processor.video_processor.temporal_patch_size)
    if unit != tps:
        raise UserError(
            f"frames: unit={unit} but this model encodes frames in temporal patches of {tps}; set unit={tps}"
        )
    inputs = build_video_inputs(processor, [question], [video], sampling=sampling)
    grid = inputs["video_grid_thw"]
    (features,) = encode_videos(model, inputs["pixel_values_videos"], grid)
    t = int(grid[0, 0])
    unit_features = features.reshape(t, -1, features.shape[-1]).float()
    ids = processor.tokenizer(question, add_special_tokens=False, return_tensors="pt")["input_ids"]
    embed = find_vl_model(model).get_input_embeddings()
    query = embed(ids.to(embed.weight.device))[0].float()
    return CandidateVideo(video=video, unit_features=unit_features.cpu(), query_embeddings=query.cpu())


def model_fingerprint(model) -> str:
    """A short hash of the model's config and a sample of its vision-tower and embedding weights.

    A querier is trained on one model's features; a checkpoint whose fingerprint differs is refused."""
    from videoktr.models.qwen2_5_vl import find_vl_model

    vl = find_vl_model(model)
    digest = hashlib.sha256(vl.config.to_json_string(use_diff=False).encode())
    tensors = [p for _, p in sorted(vl.visual.named_parameters())][:16]
    tensors.append(vl.get_input_embeddings().weight)
    for tensor in tensors:
        digest.update(tensor.detach().float().flatten()[:4096].cpu().numpy().tobytes())
    return digest.hexdigest()[:16]
