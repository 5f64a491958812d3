"""``KTRConfig``: TRL's ``GRPOConfig`` plus every Video-KTR / baseline option of METHOD.md sections 1-5.

Every new field carries help text. ``__post_init__`` validates the combination and says how to fix a bad value.
The method presets (which signals, which loss weighting) are derived from ``method``; the numbers stay fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

METHODS = ("grpo", "ktr", "entropy", "t_grpo", "tw_grpo")
SIGNALS = ("visual", "temporal", "entropy")
SCOPES = ("group", "sequence", "batch")
VISUAL_PERTURBATIONS = ("zero", "half", "replace", "drop")
TEMPORAL_PERTURBATIONS = ("shuffle", "reverse", "segment_shuffle")
DISTANCES = ("logprob", "l1", "l2", "kl", "jsd", "cosine", "hellinger")
WEIGHTINGS = ("binary", "softmax", "sigmoid", "linear", "exponential")
AGGREGATIONS = {  # our name -> the TRL loss_type with the same normalisation (one source of truth, both ways)
    "seq-mean-token-mean": "grpo",
    "token-mean": "bnpo",
    "token-mean-global": "dapo",
    "seq-mean-token-sum-norm": "dr_grpo",
}
LOSS_TYPES = {trl: ours for ours, trl in AGGREGATIONS.items()}

# TRL GRPOConfig options KTRTrainer cannot honour, refused before the model loads: field -> (allowed value, why).
TRL_OPTIONS_REFUSED = {
    "use_transformers_continuous_batching": (
        False,
        "continuous batching generates from token ids only, without the video; set it to false",
    ),
    "use_liger_kernel": (False, "the Liger GRPO loss replaces KTRTrainer's masked loss; set it to false"),
    "sync_ref_model": (False, "not implemented by KTRTrainer; set it to false"),
}

# TRL GRPOConfig fields read only by TRL's own loss, which KTRTrainer replaces: a non-default value would be ignored.
TRL_LOSS_OPTIONS_NOT_IMPLEMENTED = {
    "importance_sampling_level": "token",
    "top_entropy_quantile": 1.0,
    "delta": None,
    "off_policy_mask_threshold": None,
    "entropy_coef": 0.0,
    "use_adaptive_entropy": False,
}


def _choice(name: str, value: object, valid: tuple | dict) -> None:
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of: {', '.join(map(str, valid))}")


@dataclass
class KTRConfig(GRPOConfig):
    """GRPO training arguments plus the key-token (Video-KTR) and baseline options. See docs/method.md."""

    beta: float | None = field(
        default=None,
        metadata={
            "help": "KL coefficient (k3 estimator, every valid token). Default 0.04 as in the Video-KTR authors' "
            "scripts (the paper's text says 0.4); method tw_grpo: 0.0 (TW-GRPO's script). 0.0 skips the "
            "reference model."
        },
    )
    # ---- which algorithm -------------------------------------------------------------------------------------
    method: str = field(
        default="ktr",
        metadata={
            "help": "Training method: 'grpo' (every token), 'ktr' (Video-KTR key tokens: union of top fractions of "
            "the visual/temporal/entropy signals), 'entropy' (top-20% entropy tokens over the batch, the 80/20 "
            "baseline), 't_grpo' (Video-R1 temporal bonus from shuffled-frame rollouts), 'tw_grpo' (token weights "
            "from intra-group divergence)."
        },
    )
    # ---- key-token selection (method=ktr; method=entropy uses the entropy fraction and scope) ----------------
    ktr_signals: list[str] = field(
        default_factory=lambda: ["visual", "temporal", "entropy"],
        metadata={
            "help": "Signals whose top tokens are selected (method=ktr): any of visual, temporal, entropy."
        },
    )
    ktr_visual_fraction: float = field(
        default=0.2,
        metadata={"help": "Top fraction r of valid tokens kept by the visual signal (paper: 0.2)."},
    )
    ktr_temporal_fraction: float = field(
        default=0.2,
        metadata={"help": "Top fraction r of valid tokens kept by the temporal signal (paper: 0.2)."},
    )
    ktr_entropy_fraction: float = field(
        default=0.2,
        metadata={"help": "Top fraction r of valid tokens kept by the entropy signal (paper: 0.2)."},
    )
    ktr_scope: str | None = field(
        default=None,
        metadata={
            "help": "Where the top fraction is taken: 'group' (all valid tokens of the G completions of one prompt, "
            "the authors' code), 'sequence' (within each completion), 'batch' (all valid tokens of the batch, "
            "gathered across processes). Unset: the method's default, 'batch' for method=entropy (the 80/20 "
            "baseline, as TRL's top_entropy_quantile) and 'group' otherwise; a value set is honoured."
        },
    )
    ktr_combine: str = field(
        default="union",
        metadata={"help": "How per-signal selections combine: 'union' (paper) or 'intersection'."},
    )
    ktr_signed: bool = field(
        default=False,
        metadata={
            "help": "Score V/T by the signed shift logp_full - logp_perturbed (authors' code) instead of its "
            "absolute value (paper)."
        },
    )
    ktr_visual_perturbation: str = field(
        default="zero",
        metadata={
            "help": "Visual counterfactual: 'zero' (video features set to 0, paper), 'half' (zero half of the "
            "temporal patches), 'replace' (features of another video of the batch), 'drop' (attention-mask the "
            "video positions, authors' code)."
        },
    )
    ktr_temporal_perturbation: str = field(
        default="shuffle",
        metadata={
            "help": "Temporal counterfactual: 'shuffle' (random non-identity permutation of temporal patches), "
            "'reverse', 'segment_shuffle' (shuffle ktr_segments contiguous segments)."
        },
    )
    ktr_temporal_level: str = field(
        default="feature",
        metadata={
            "help": "'feature': permute the vision features of temporal patches (no extra vision pass; exact for "
            "Qwen2.5-VL, whose encoder treats each temporal patch independently). 'frame': shuffle raw frames and "
            "re-encode (authors' code; one extra vision pass)."
        },
    )
    ktr_segments: int = field(default=4, metadata={"help": "Number of segments for segment_shuffle."})
    ktr_distance: str = field(
        default="logprob",
        metadata={
            "help": "Score of a perturbation: 'logprob' (shift of the sampled token's log-prob, paper default and "
            "cheapest) or a distance between full next-token distributions: l1, l2, kl, jsd, cosine, hellinger."
        },
    )
    ktr_weighting: str = field(
        default="binary",
        metadata={
            "help": "'binary' top-fraction mask (paper) or a soft weight of the combined importance score: softmax, "
            "sigmoid, linear, exponential (normalised per completion)."
        },
    )
    ktr_denominator: str = field(
        default="valid",
        metadata={
            "help": "Per-completion denominator of the policy term: 'valid' = completion length |o_i| (paper eq. 2) "
            "or 'selected' = number of selected tokens (authors' code)."
        },
    )
    ktr_mask_kl: bool = field(
        default=False,
        metadata={
            "help": "Gate the KL term by the key-token mask too (authors' code); paper: KL on every token."
        },
    )
    loss_type: str | None = field(
        default=None,
        metadata={
            "help": "TRL's name for the aggregation (one source of truth with `aggregation`; set either): grpo = "
            "seq-mean-token-mean, bnpo = token-mean, dapo = token-mean-global, dr_grpo = seq-mean-token-sum-norm. "
            "TRL's other loss types (cispo, sapo, luspo, vespo) are refused: KTRTrainer's loss does not implement "
            "them."
        },
    )
    aggregation: str | None = field(
        default=None,
        metadata={
            "help": "Loss aggregation (default seq-mean-token-mean; method tw_grpo: token-mean; or the one "
            "loss_type names): "
            "'seq-mean-token-mean' (paper eq. 1-2, TRL grpo), 'token-mean' (over the micro-batch's tokens, TRL "
            "bnpo), 'token-mean-global' (over the tokens of the whole accumulated batch of every process, TRL dapo), "
            "'seq-mean-token-sum-norm' (Dr. GRPO: divide by rows * max_completion_length)."
        },
    )
    ktr_skip_zero_advantage: bool = field(
        default=True,
        metadata={
            "help": "Skip the attribution passes of groups whose advantages are all 0 where that leaves the loss "
            "unchanged (docs/method.md); false scores every row (e.g. to analyse every completion's selection)."
        },
    )
    ktr_full_logps: str = field(
        default="generation",
        metadata={
            "help": "Where the full-video log-probs and entropies of the attribution come from: 'generation' (the "
            "sampling pass's own logits, recorded during generate: no extra pass; equal to a forward up to KV-cache "
            "numerics) or 'forward' (one extra no-grad teacher-forced pass, the loss's numerics)."
        },
    )
    ktr_score_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Rows per no-grad attribution forward at the end of the rollout (default: all scored rows of "
            "the generation batch in one forward; set e.g. per_device_train_batch_size if memory is short)."
        },
    )
    ktr_perturbation_draw: str = field(
        default="prompt",
        metadata={
            "help": "How often the random feature perturbations (shuffle, segment_shuffle, half, replace) are drawn: "
            "'prompt' (one draw shared by the G completions of a prompt, the authors' choice) or 'row' (a new "
            "draw for every completion)."
        },
    )
    use_bias_correction_kl: bool = field(
        default=False,
        metadata={
            "help": "TRL's importance-ratio correction of the KL gradient. KTRTrainer computes the plain k3 KL of "
            "METHOD 3, so this must stay false (TRL's default is true)."
        },
    )
    # ---- rewards ---------------------------------------------------------------------------------------------
    accuracy_reward: str = field(
        default="accuracy",
        metadata={"help": "Name of the reward function that the length bonus and the T-GRPO bonus add to."},
    )
    length_bonus: bool = field(
        default=True,
        metadata={
            "help": "Video-R1 length control: +length_bonus_value to a correct completion whose length is in "
            "[length_bonus_min, length_bonus_max] tokens, when >= length_bonus_min_correct of its group are correct."
        },
    )
    length_bonus_min: int = field(
        default=320, metadata={"help": "Lower completion length (tokens) of the bonus."}
    )
    length_bonus_max: int = field(
        default=512, metadata={"help": "Upper completion length (tokens) of the bonus."}
    )
    length_bonus_value: float = field(default=0.2, metadata={"help": "Size of the length bonus."})
    length_bonus_min_correct: int = field(
        default=2,
        metadata={"help": "Correct completions a group needs before any of them gets the length bonus."},
    )
    tgrpo_mu: float = field(
        default=0.8,
        metadata={
            "help": "T-GRPO: bonus applies when p_ordered >= mu * p_shuffled (authors' code 0.8; later 1.0)."
        },
    )
    tgrpo_alpha: float = field(
        default=0.3,
        metadata={"help": "T-GRPO: bonus added to the accuracy reward of correct ordered completions."},
    )
    tgrpo_num_shuffled: int | None = field(
        default=None,
        metadata={"help": "T-GRPO: completions sampled per prompt with shuffled frames (default G/2)."},
    )
    tw_alpha: float = field(
        default=1.7,
        metadata={"help": "TW-GRPO: maximum token weight; w = 1 + (alpha - 1) * normalised divergence."},
    )
    tw_weight_grad: bool = field(
        default=True,
        metadata={
            "help": "TW-GRPO: the gradient flows through the token weights (the authors' code computes them from "
            "the policy's log-probs in the loss forward). Needs whole groups in every micro-batch "
            "(steps_per_generation=1). false: weights without gradient, computed on whole groups at the end of "
            "the rollout, exact at any batching."
        },
    )
    # ---- video input -----------------------------------------------------------------------------------------
    video_frames: int | None = field(
        default=16, metadata={"help": "Frames sampled uniformly per video (even; paper: 16 for training)."}
    )
    video_fps: float | None = field(
        default=None,
        metadata={"help": "Sample at this rate instead of a fixed count (then video_frames is unset)."},
    )
    video_max_frames: int = field(
        default=64, metadata={"help": "Upper bound on frames when sampling by fps."}
    )
    video_min_frames: int = field(
        default=4, metadata={"help": "Lower bound on frames when sampling by fps (the authors' rule: 4)."}
    )
    video_min_pixels: int | None = field(
        default=None, metadata={"help": "Minimum pixels per frame (processor)."}
    )
    video_max_pixels: int | None = field(
        default=128 * 28 * 28, metadata={"help": "Maximum pixels per frame (paper: 128*28*28 for training)."}
    )
    prompt_template: str = field(
        default="video-r1",
        metadata={"help": "Prompt template name (videoktr.data.prompts); same one for eval."},
    )
    log_selected_examples: int = field(
        default=0,
        metadata={
            "help": "Rows per generation batch whose selection (scores, masks, union, advantage) is appended to "
            "output_dir/selection.jsonl: -1 = every row, n > 0 = the first n rows of each process, 0 = none. "
            "Format: docs/metrics.md."
        },
    )

    def __post_init__(self):
        self._method_defaults()
        self._resolve_aggregation()
        super().__post_init__()
        self._validate_ktr()

    def _method_defaults(self) -> None:
        """Fill the loss settings a method defines and the user left unset; ``method_defaults`` records them.

        tw_grpo (TW-GRPO's scripts/tw-grpo.sh and grpo_trainer.py): token-mean loss, clip 0.2 / 0.28, beta 0;
        every other method: seq-mean-token-mean (TRL grpo), clip epsilon_high = epsilon, beta 0.04.
        Selection scope: batch for method=entropy (the 80/20 baseline), group otherwise.
        """
        tw = self.method == "tw_grpo"
        filled = {}
        if self.aggregation is None and self.loss_type is None:
            self.aggregation = filled["aggregation"] = "token-mean" if tw else "seq-mean-token-mean"
        if self.epsilon_high is None and tw:
            self.epsilon_high = filled["epsilon_high"] = 0.28
        if self.beta is None:
            self.beta = filled["beta"] = 0.0 if tw else 0.04
        if self.ktr_scope is None:
            self.ktr_scope = filled["ktr_scope"] = "batch" if self.method == "entropy" else "group"
        self.method_defaults = filled

    def effective_loss_settings(self) -> str:
        """One line with the loss settings in force, each marked when the method's default filled it."""
        values = {
            "method": self.method,
            "aggregation": self.aggregation,
            "epsilon": self.epsilon,
            "epsilon_high": self.epsilon_high if self.epsilon_high is not None else self.epsilon,
            "beta": self.beta,
        }
        if self.method == "tw_grpo":
            values["tw_alpha"] = self.tw_alpha
            values["tw_weight_grad"] = self.tw_weight_grad
        if self.selection_signals:
            values["ktr_scope"] = self.ktr_scope
        defaults = getattr(self, "method_defaults", {})
        return ", ".join(
            f"{k}={v}" + (" (method default)" if k in defaults else "") for k, v in values.items()
        )

    def _resolve_aggregation(self) -> None:
        """``aggregation`` and TRL's ``loss_type`` name one thing: derive one from the other, refuse a conflict."""
        if self.loss_type is not None and self.loss_type not in LOSS_TYPES:
            raise ValueError(
                f"loss_type={self.loss_type!r} is not implemented by KTRTrainer's loss; choose one of "
                f"{', '.join(LOSS_TYPES)} (or set aggregation: {', '.join(AGGREGATIONS)})"
            )
        if self.aggregation is not None:
            _choice("aggregation", self.aggregation, AGGREGATIONS)
        if self.aggregation is None:
            self.aggregation = LOSS_TYPES.get(self.loss_type or "grpo")
        elif self.loss_type is not None and AGGREGATIONS[self.aggregation] != self.loss_type:
            raise ValueError(
                f"aggregation={self.aggregation!r} and loss_type={self.loss_type!r} disagree (aggregation "
                f"{self.aggregation} is TRL's {AGGREGATIONS[self.aggregation]}); set only one of them"
            )
        self.loss_type = AGGREGATIONS[self.aggregation]

    # kept separate so __post_init__ stays readable
    def _validate_ktr(self) -> None:
        _choice("method", self.method, METHODS)
        _choice("ktr_scope", self.ktr_scope, SCOPES)
        _choice("ktr_combine", self.ktr_combine, ("union", "intersection"))
        _choice("ktr_visual_perturbation", self.ktr_visual_perturbation, VISUAL_PERTURBATIONS)
        _choice("ktr_temporal_perturbation", self.ktr_temporal_perturbation, TEMPORAL_PERTURBATIONS)
        _choice("ktr_temporal_level", self.ktr_temporal_level, ("feature", "frame"))
        _choice("ktr_distance", self.ktr_distance, DISTANCES)
        _choice("ktr_weighting", self.ktr_weighting, WEIGHTINGS)
        _choice("ktr_denominator", self.ktr_denominator, ("valid", "selected"))
        _choice("ktr_perturbation_draw", self.ktr_perturbation_draw, ("prompt", "row"))
        _choice("ktr_full_logps", self.ktr_full_logps, ("generation", "forward"))
        for name, (allowed, why) in TRL_OPTIONS_REFUSED.items():
            if getattr(self, name, allowed) != allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is refused: {why}")
        if self.use_vllm:  # video requests through TRL's colocated engine: videoktr/vllm
            from videoktr.vllm.install import check_vllm_config

            check_vllm_config(self)
        if self.aggregation == "token-mean-global" and self.ktr_denominator == "selected":
            raise ValueError(
                "aggregation token-mean-global (TRL dapo) normalises by the valid tokens of the accumulated batch; "
                "with ktr_denominator: selected use aggregation: token-mean or seq-mean-token-mean"
            )
        if isinstance(self.ktr_signals, str):
            self.ktr_signals = [s.strip() for s in self.ktr_signals.split(",") if s.strip()]
        for signal in self.ktr_signals:
            _choice("ktr_signals entry", signal, SIGNALS)
        if self.method == "ktr" and not self.ktr_signals:
            raise ValueError("method='ktr' needs at least one of ktr_signals: visual, temporal, entropy")
        for name in ("ktr_visual_fraction", "ktr_temporal_fraction", "ktr_entropy_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} is outside [0, 1]; it is the fraction of valid tokens kept")
        if self.ktr_segments < 2:
            raise ValueError(f"ktr_segments={self.ktr_segments}: segment_shuffle needs at least 2 segments")
        if self.video_frames is not None and self.video_fps is not None:
            raise ValueError(
                "set either video_frames or video_fps, not both (set video_frames: null to use fps)"
            )
        if self.video_frames is None and self.video_fps is None:
            raise ValueError("set video_frames (e.g. 16) or video_fps")
        if self.video_frames is not None and (self.video_frames < 2 or self.video_frames % 2):
            raise ValueError(
                f"video_frames={self.video_frames} must be even and >= 2 (Qwen2.5-VL pairs frames)"
            )
        if self.method == "t_grpo" and self.num_generations is not None and self.num_generations < 2:
            raise ValueError(
                "method='t_grpo' needs num_generations >= 2 (it samples G/2 shuffled completions)"
            )
        if self.length_bonus_min > self.length_bonus_max:
            raise ValueError("length_bonus_min must be <= length_bonus_max")
        if self.use_bias_correction_kl and self.beta != 0.0:
            raise ValueError(
                "use_bias_correction_kl=True is not implemented by KTRTrainer (it uses the plain k3 KL); "
                "set use_bias_correction_kl: false"
            )
        for name, default in TRL_LOSS_OPTIONS_NOT_IMPLEMENTED.items():
            if getattr(self, name) != default:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is a TRL GRPO loss option KTRTrainer's loss does not implement; "
                    f"leave it at {default!r} (for the 80/20 entropy baseline use method: entropy)"
                )
        local = self.per_device_train_batch_size * (self.steps_per_generation or 1)
        if (
            self.method in ("ktr", "entropy", "tw_grpo")
            and self.num_generations
            and local % self.num_generations
        ):
            raise ValueError(
                f"each process's generation batch (per_device_train_batch_size * steps_per_generation = {local} "
                f"rows) must hold whole groups of num_generations={self.num_generations}: key tokens and TW-GRPO "
                "weights are computed on whole groups; change per_device_train_batch_size or steps_per_generation"
            )
        if self.ktr_score_batch_size is not None and self.ktr_score_batch_size < 1:
            raise ValueError(
                f"ktr_score_batch_size={self.ktr_score_batch_size} must be >= 1 (or null: all rows)"
            )
        if self.tw_alpha < 1.0:
            raise ValueError(f"tw_alpha={self.tw_alpha} must be >= 1 (weights run from 1 to alpha)")
        if self.method == "tw_grpo" and self.tw_weight_grad and (self.steps_per_generation or 1) != 1:
            raise ValueError(
                f"tw_weight_grad=true (gradient through TW-GRPO's weights, as the authors) computes the weights in "
                f"the loss forward, so every micro-batch must hold whole groups; with steps_per_generation="
                f"{self.steps_per_generation} TRL splits each group over micro-batches. Set steps_per_generation=1 "
                "(generate at every micro-step), or tw_weight_grad=false (weights without gradient, computed on "
                "whole groups at the rollout)"
            )

    # ---- derived views used by the trainer -------------------------------------------------------------------
    def video_sampling(self):
        """The ``VideoSamplingConfig`` these fields describe (frames or fps, pixel budget)."""
        from videoktr.data.video import VideoSamplingConfig

        return VideoSamplingConfig(
            num_frames=self.video_frames,
            fps=self.video_fps,
            max_frames=self.video_max_frames,
            min_frames=self.video_min_frames,
            min_pixels=self.video_min_pixels,
            max_pixels=self.video_max_pixels,
        )

    @property
    def selection_signals(self) -> list[str]:
        """Signals that gate the policy gradient for this method ([] = every token)."""
        if self.method == "ktr":
            return list(self.ktr_signals)
        if self.method == "entropy":
            return ["entropy"]
        return []

    @property
    def selection_fractions(self) -> dict[str, float]:
        return {
            "visual": self.ktr_visual_fraction,
            "temporal": self.ktr_temporal_fraction,
            "entropy": self.ktr_entropy_fraction,
        }

    @property
    def selection_scope(self) -> str:
        return self.ktr_scope
