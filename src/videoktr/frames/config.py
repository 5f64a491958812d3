"""Settings of Frame-Voyager: candidates, frames kept, labelling, the querier and its training.

Where the paper (Frame-Voyager, ICLR 2025) cannot be read, the choice made here is a field with its reason in the
help text and in ``docs/frames.md``: M, T, the combination unit, K, the pruning rule, the loss form and margin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from videoktr.errors import UserError

LABEL_SOURCES = ("model", "oracle")
LOSS_FORMS = ("sum", "mean", "option_nll")
SCORE_AGGREGATES = ("mean",)


@dataclass
class VoyagerConfig:
    """Frame-Voyager settings shared by ``videoktr frames label | train | select | demo``."""

    candidates: int = field(
        default=16,
        metadata={
            "help": "M: candidate frames sampled uniformly from each video (even). The querier scores these; "
            "a video with fewer frames is refused."
        },
    )
    frames: int = field(
        default=6,
        metadata={
            "help": "T: frames kept and shown to the video LLM (even, <= M; a multiple of `unit`). "
            "The paper's VILA runs keep 8 of 128 candidates; 6 of 16 fits the tiny CPU model."
        },
    )
    unit: int = field(
        default=2,
        metadata={
            "help": "Frames per selection unit: Qwen2.5-VL encodes frame pairs (temporal patch 2), so frames are "
            "chosen in aligned pairs of candidates and a combination is T/unit units out of M/unit."
        },
    )
    max_combinations: int = field(
        default=64,
        metadata={
            "help": "K: combinations labelled per record. All C(M/unit, T/unit) when that is <= K, else K "
            "sampled uniformly without replacement (seeded per record)."
        },
    )
    label_source: str = field(
        default="model",
        metadata={
            "help": "'model': a combination's label is the video LLM's teacher-forced loss on the gold answer "
            "(the paper). 'oracle': 0 if the combination holds the record's evidence_frames rule, else 1."
        },
    )
    loss_form: str = field(
        default="sum",
        metadata={
            "help": "Label of a combination, from the teacher-forced gold target: 'sum' of the target tokens' NLL "
            "(answer-bearing tokens are not diluted by template tokens), 'mean' per token, or 'option_nll': "
            "-log of the gold option's probability normalised over the record's options, each compared at the "
            "first target token where its answer differs from the gold one (the paper ranks by the LLM's loss; "
            "this reading keeps only the answer's part of it and removes what all options share: template "
            "tokens and the model's prior over answers). Multiple-choice records only."
        },
    )
    min_loss_spread: float = field(
        default=0.5,
        metadata={
            "help": "Pruning rule: drop a record whose combinations' losses differ by less than this (max - min, "
            "in nats of the chosen loss form): the model cannot tell its combinations apart."
        },
    )
    max_best_loss: float | None = field(
        default=None,
        metadata={
            "help": "Second pruning rule (off when null): also drop a record whose lowest combination loss is above "
            "this: the model answers it from no combination, so its losses rank noise. With option_nll, "
            "log(2) = 0.693 means 'the gold option never reaches probability 1/2'."
        },
    )
    pair_margin: float = field(
        default=0.1,
        metadata={
            "help": "A training pair (c_w, c_l) needs loss(c_l) - loss(c_w) >= margin (nats): near-ties are not "
            "ranked. Loss: -log sigmoid(r(c_w) - r(c_l)), r(c) = mean of its frames' scores."
        },
    )
    winner_fraction: float = field(
        default=0.05,
        metadata={
            "help": "Training pairs (c_w, c_l) take c_w only among a record's lowest-loss fraction of its labelled "
            "combinations (at least 1; 1.0: any pair with the margin). Selection keeps the top combination, and "
            "pairs between two poor combinations (ordered by what else they show) teach the querier a ranking it "
            "does not need: on held-out training records 1.0 gave 0.69-0.74 sufficiency, 0.05 0.96-0.98."
        },
    )
    label_batch_size: int = field(
        default=64, metadata={"help": "Combinations per teacher-forced LM pass when labelling (memory knob)."}
    )
    hidden_size: int = field(default=64, metadata={"help": "Querier width."})
    layers: int = field(
        default=2,
        metadata={
            "help": "Querier transformer layers over [query, unit_1..unit_n] (frames see each other and the "
            "question, as the paper's querier sees all M candidates with the query)."
        },
    )
    query: str = field(
        default="question",
        metadata={
            "help": "What the querier reads: 'question' (the record's problem text) or 'prompt' (the full prompt "
            "with options and format instructions; for benchmarks whose options say what to look for)."
        },
    )
    arch: str = field(
        default="gru",
        metadata={
            "help": "Querier body: 'transformer' (units and question tokens attend to each other) or 'gru' (the "
            "same, then a bidirectional GRU over the units in time order: a bias toward local relations)."
        },
    )
    train_steps: int = field(default=800, metadata={"help": "Querier optimiser steps."})
    pairs_per_record: int = field(
        default=16, metadata={"help": "Combination pairs sampled per record per step."}
    )
    records_per_step: int = field(default=32, metadata={"help": "Records per querier step."})
    lr: float = field(default=2e-3, metadata={"help": "Querier learning rate (AdamW, cosine)."})
    seed: int = field(
        default=0, metadata={"help": "Seed of combination sampling, querier init and training."}
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`UserError` naming the bad field and how to fix it."""
        if self.unit < 1:
            raise UserError(f"frames: unit={self.unit} must be >= 1 (2 for Qwen2.5-VL)")
        for name in ("candidates", "frames"):
            value = getattr(self, name)
            if value < 2 or value % 2 or value % self.unit:
                raise UserError(
                    f"frames: {name}={value} must be even, >= 2 and a multiple of unit={self.unit}"
                )
        if self.frames > self.candidates:
            raise UserError(
                f"frames: T={self.frames} > M={self.candidates}: cannot keep more frames than the candidates; "
                f"lower --frames or raise --candidates"
            )
        if self.label_source not in LABEL_SOURCES:
            raise UserError(f"frames: label_source={self.label_source!r}; valid: {', '.join(LABEL_SOURCES)}")
        if self.query not in ("question", "prompt"):
            raise UserError(f"frames: query={self.query!r}; valid: question, prompt")
        if self.arch not in ("transformer", "gru"):
            raise UserError(f"frames: arch={self.arch!r}; valid: transformer, gru")
        if self.loss_form not in LOSS_FORMS:
            raise UserError(f"frames: loss_form={self.loss_form!r}; valid: {', '.join(LOSS_FORMS)}")
        for name in (
            "max_combinations",
            "label_batch_size",
            "hidden_size",
            "layers",
            "train_steps",
            "pairs_per_record",
        ):
            if getattr(self, name) < 1:
                raise UserError(f"frames: {name}={getattr(self, name)} must be >= 1")
        if self.records_per_step < 1:
            raise UserError(f"frames: records_per_step={self.records_per_step} must be >= 1")
        if not 0 < self.winner_fraction <= 1:
            raise UserError(f"frames: winner_fraction={self.winner_fraction} must be in (0, 1]")
        if self.min_loss_spread < 0 or self.pair_margin < 0:
            raise UserError("frames: min_loss_spread and pair_margin must be >= 0")
        if self.max_best_loss is not None and self.max_best_loss < 0:
            raise UserError(f"frames: max_best_loss={self.max_best_loss} must be >= 0 or null (off)")
        if not self.lr > 0:
            raise UserError(f"frames: lr={self.lr} must be > 0")

    @property
    def n_units(self) -> int:
        """Candidate units: M / unit."""
        return self.candidates // self.unit

    @property
    def k_units(self) -> int:
        """Units kept: T / unit."""
        return self.frames // self.unit
