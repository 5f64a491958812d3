"""The sampling pass's own log-probs and entropies of the sampled tokens, recorded during ``generate``.

``generate`` computes the policy's next-token logits at every sampled position. A forward hook on the model reads
them (before any logits processor, i.e. the raw logits, divided by the sampling temperature as TRL's log-probs are),
keeps the log-prob of the token sampled at each step (known at the next step, or from the completion for the last
one) and the entropy of the distribution. The full-video log-probs and entropies of the attribution are then free:
no extra teacher-forced pass (``ktr_full_logps: generation``). They equal a teacher-forced forward up to the
numerics of the KV cache (about 1e-6 in float32).
"""

from __future__ import annotations

import torch


class GenerationRecorder:
    """Forward hook that records per-step log-probs of the sampled tokens and entropies. Shapes: (N, steps)."""

    def __init__(self, temperature: float):
        self.temperature = temperature
        self.pending: torch.Tensor | None = None  # (N, V) log-probs of the last step, its token not known yet
        self.logps: list[torch.Tensor] = []
        self.entropies: list[torch.Tensor] = []

    def hook(self, module, args, kwargs, output) -> None:
        logits = getattr(output, "logits", None)
        ids = kwargs.get("input_ids")
        if logits is None or ids is None:
            raise RuntimeError("ktr_full_logps=generation: the generation forward gave no logits / input_ids")
        if self.pending is not None:
            self.logps.append(self.pending.gather(1, ids[:, -1:].to(self.pending.device)).squeeze(1))
        logp = torch.log_softmax(logits[:, -1, :].float() / self.temperature, dim=-1)
        self.entropies.append(-(logp.exp() * logp).sum(-1))
        self.pending = logp

    def finish(self, completion_ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, steps) log-probs and entropies; position k of row i belongs to ``completion_ids[i][k]``."""
        if self.pending is None:
            raise RuntimeError("ktr_full_logps=generation: no generation forward was recorded")
        steps = len(self.entropies)
        last = torch.tensor(
            [ids[steps - 1] if len(ids) >= steps else 0 for ids in completion_ids], device=self.pending.device
        )
        self.logps.append(self.pending.gather(1, last[:, None]).squeeze(1))
        self.pending = None
        return torch.stack(self.logps, dim=1), torch.stack(self.entropies, dim=1)


def fit_width(values: torch.Tensor, width: int) -> torch.Tensor:
    """(N, steps) -> (N, width): cut or right-pad with zeros (padding positions are never valid tokens)."""
    if values.size(1) >= width:
        return values[:, :width]
    return torch.nn.functional.pad(values, (0, width - values.size(1)))
