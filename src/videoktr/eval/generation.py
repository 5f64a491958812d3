"""How the evaluation generates answers (:class:`GenerationSettings`), shared by the runner and the backends."""

from __future__ import annotations

from dataclasses import dataclass, field

from videoktr.errors import UserError

__all__ = ["AUTHORS_GENERATION", "GenerationSettings"]


@dataclass
class GenerationSettings:
    """How answers are generated. Every sampling parameter is explicit and recorded with the run; the defaults
    are those of the trainer's rollouts (TRL ``GRPOConfig``: top_k 0 = off, min_p off, repetition_penalty 1), not
    ``generate``'s fallbacks (top_k 50) or a checkpoint's ``generation_config.json``."""

    max_new_tokens: int = field(
        default=1024, metadata={"help": "Tokens generated per answer (authors: 1024)."}
    )
    temperature: float = field(
        default=0.0, metadata={"help": "0 = greedy decoding (default); the authors' evaluation uses 0.1."}
    )
    top_p: float = field(
        default=1.0, metadata={"help": "Nucleus sampling mass when temperature > 0 (authors: 0.001)."}
    )
    top_k: int = field(default=0, metadata={"help": "Top-k when sampling; 0 = off (TRL rollouts, vLLM)."})
    min_p: float | None = field(default=None, metadata={"help": "Min-p when sampling; None = off."})
    repetition_penalty: float = field(default=1.0, metadata={"help": "1.0 = none (TRL rollouts)."})
    seed: int = field(
        default=0,
        metadata={
            "help": "Sampling seed; each batch draws with seed + the index of its first item (resumable)."
        },
    )

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise UserError(f"max_new_tokens={self.max_new_tokens} must be >= 1, e.g. 1024")
        if self.temperature < 0:
            raise UserError(f"temperature={self.temperature} must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p={self.top_p} must be in (0, 1], e.g. 1.0 (or 0.001 as the authors)")
        if self.top_k < 0:
            raise UserError(f"top_k={self.top_k} must be >= 0 (0 = off)")
        if self.min_p is not None and not 0 <= self.min_p <= 1:
            raise UserError(f"min_p={self.min_p} must be in [0, 1] (or omitted = off)")
        if self.repetition_penalty <= 0:
            raise UserError(f"repetition_penalty={self.repetition_penalty} must be > 0 (1.0 = none)")


AUTHORS_GENERATION = GenerationSettings(max_new_tokens=1024, temperature=0.1, top_p=0.001)
