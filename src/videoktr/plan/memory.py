"""Passes per step and a memory estimate per GPU for a recipe (``videoktr plan``). Plain arithmetic, no torch.

Passes (per process, per generation batch of ``R = per_device_train_batch_size * steps_per_generation`` rows),
counted from ``training/`` and TRL 1.16's ``GRPOTrainer``:

- rollout: one ``generate`` (prefill: the vision tower on all R rows' videos; then up to ``max_completion_length``
  decode steps; with ``use_vllm`` (colocate) in vLLM, whose ``vllm_gpu_memory_utilization`` share of ``--gpu-mem``
  is then a static part, and TRL recomputes the old log-probs for its importance sampling); ``t_grpo`` adds one more ``generate`` on frame-shuffled prompts (``tgrpo_num_shuffled`` rows each);
- TRL: the old-policy log-probs (one LM pass, vision inside) only when ``gradient_accumulation_steps`` is not a
  multiple of ``steps_per_generation * num_iterations``; the reference log-probs (one LM pass of the reference
  model, vision inside) when ``beta != 0``;
- selection (``training/selection.py``, no grad): ``ktr``/``entropy``: one vision pass (distinct videos), a full LM
  pass only with ``ktr_full_logps: forward``, one LM pass per perturbed signal (visual, temporal; two full-logits
  passes per signal for a distance other than ``logprob``), one more vision pass for ``ktr_temporal_level: frame``;
  ``tw_grpo`` with ``tw_weight_grad: false``: one vision + one full-logits LM pass. Groups whose advantages are
  all 0 are skipped when exact, so these are upper bounds;
- loss: per micro-batch one vision pass (distinct videos) + one LM forward and backward.

Memory (bytes per GPU) = static + the largest phase: static = weights (+ reference copy when ``beta != 0`` and no
LoRA) + optimizer states (+ gradients in the loss phase), each divided by the GPU count where the ZeRO stage shards
it (stage 3: weights, 2+: gradients, 2+/3: optimizer); phases = the video processor on the batch's frames, rollout
(KV cache of R rows + prefill), scoring (the
largest no-grad pass: ``ktr_score_batch_size`` rows, default all R, or TRL's per-device batch), loss (activations of
one micro-batch with or without gradient checkpointing, + gradients). Activations per token and layer are counted
from what autograd saves in a Qwen2 decoder layer (docs/plan.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

GiB = 1024**3

__all__ = ["GiB", "Passes", "Setup", "Estimate", "count_passes", "estimate_memory", "forward_flops"]


@dataclass(frozen=True)
class Setup:
    """The hardware side of a plan: GPUs, their memory, the ZeRO stage (0 = plain data parallel)."""

    gpus: int = 1
    gpu_mem_gib: float | None = None
    zero: int = 0
    flash_attention: bool = (
        True  # attention without the (heads, L, L) matrix (CUDA sdpa / flash); False on CPU
    )


@dataclass
class Passes:
    """Forward passes per generation batch (upper bounds, see the module docstring)."""

    rows: int  # R: rows of one generation batch per process
    generations_per_step: float  # generation batches per optimizer step
    generate: int = 1
    vision: dict = field(default_factory=dict)  # phase -> vision passes
    lm: dict = field(default_factory=dict)  # phase -> LM passes (no grad unless the phase is "loss")

    @property
    def vision_total(self) -> int:
        return sum(self.vision.values())

    @property
    def lm_total(self) -> int:
        return sum(self.lm.values())


def count_passes(t: dict) -> Passes:
    """Passes of a recipe's ``trainer`` fields (KTRConfig defaults filled in, ``beta`` resolved)."""
    ga = int(t["gradient_accumulation_steps"])
    spg = int(t.get("steps_per_generation") or ga)
    iters = int(t.get("num_iterations") or 1)
    rows = int(t["per_device_train_batch_size"]) * spg
    p = Passes(rows=rows, generations_per_step=ga / (spg * iters))
    method = t["method"]
    p.vision["rollout"] = 1
    if method == "t_grpo":
        p.generate, p.vision["rollout"] = 2, 2
    vllm_is = t.get("use_vllm") and t.get("vllm_importance_sampling_correction", True)
    if ga % (spg * iters) or vllm_is:  # with vLLM, TRL always recomputes them for its importance sampling
        p.vision["old_logps"] = p.lm["old_logps"] = 1
    if float(t["beta"]) != 0.0:
        p.vision["ref_logps"] = p.lm["ref_logps"] = 1
    signals = list(t["ktr_signals"]) if method == "ktr" else ["entropy"] if method == "entropy" else []
    if signals:
        p.vision["selection"] = 1 + (
            method == "ktr" and "temporal" in signals and t["ktr_temporal_level"] == "frame"
        )
        per_signal = 1 if t["ktr_distance"] == "logprob" else 2
        lm = sum(per_signal for s in signals if s in ("visual", "temporal"))
        lm += t["ktr_full_logps"] == "forward"
        p.lm["selection"] = lm
    if method == "tw_grpo" and not t["tw_weight_grad"]:
        p.vision["selection"] = p.lm["selection"] = 1
    p.vision["loss"] = p.lm["loss"] = spg * iters  # micro-batches per generation batch, forward + backward
    return p


@dataclass
class Estimate:
    """Per-GPU memory estimate in bytes, by component, and the phase that sets the peak."""

    parts: dict  # name -> bytes
    phases: dict  # phase -> transient bytes on top of the static parts
    peak_phase: str
    static: int
    peak: int
    peak_no_gc: int  # the same with gradient checkpointing off
    peak_gc: int  # ... and on


def _layer_saved(h: int, kv: int, inter: int, heads: int, seq: int, act: int, flash: bool) -> float:
    """Bytes autograd saves per token in one Qwen2-style decoder layer: two RMSNorms (float32 input + output), the
    attention's q, k, v and output (+ o_proj input), the gated MLP's gate, up, act(gate) and product; without a
    flash kernel that takes the padding itself (CPU sdpa), the (L,) row of the additive mask each layer keeps.
    Checked against the tensors autograd saves in the tiny model (benchmarks/plan_memory.py)."""
    norms = 2 * (4 * h + act * h)
    attention = act * (2 * h + 2 * kv + h)
    mlp = act * 4 * inter
    mask = 0 if flash else act * seq
    return norms + attention + mlp + mask


def _layer_transient(h: int, inter: int, heads: int, seq: int, act: int, flash: bool) -> float:
    """Bytes alive per token inside one layer of a no-grad forward (residual, normed input, MLP gate/up/act)."""
    return act * (3 * h + 3 * inter) + (0 if flash else act * seq)


def estimate_memory(t: dict, sizes, tokens, setup: Setup, lora: dict | None, freeze_vision: bool) -> Estimate:
    """Memory per GPU of one optimizer step (see the module docstring). ``t``: trainer fields with defaults;
    ``sizes``: ModelSizes; ``tokens``: SampleTokens; ``lora``: the recipe's lora mapping or None."""
    init = t.get("model_init_kwargs") or {}
    dtype = str(init.get("dtype") or init.get("torch_dtype") or "float32")
    wb = 2 if dtype in ("bfloat16", "float16", "torch.bfloat16", "torch.float16") else 4
    act = 2 if (wb == 2 or t.get("bf16") or t.get("fp16")) else 4
    n, zero = max(1, setup.gpus), setup.zero
    params = sizes.params
    if lora:
        r = int(lora.get("r", 16))
        targets = lora.get("target_modules") or ["q_proj", "k_proj", "v_proj", "o_proj"]
        trainable = sizes.lora_params(r, [targets] if isinstance(targets, str) else list(targets))
    else:
        trainable = params - (sizes.vision_params if freeze_vision else 0)
    shard_w = n if zero == 3 else 1
    shard_g = n if zero >= 2 else 1
    parts = {"weights": params * wb / shard_w}
    if float(t["beta"]) != 0.0 and not lora:
        parts["reference model"] = params * wb / shard_w
    if zero:  # DeepSpeed: fp32 master weights + Adam moments, sharded from stage 1
        parts["optimizer (fp32 master + Adam)"] = trainable * 12 / n
    else:  # torch AdamW: two moments in the parameter dtype (+ float32 LoRA adapters)
        parts["optimizer (AdamW moments)"] = trainable * 2 * (4 if lora else wb)
    grads = trainable * (4 if lora else wb) / shard_g
    if t.get("use_vllm"):  # colocate: vLLM reserves this share of the GPU (weights copy + its KV cache)
        share = float(t.get("vllm_gpu_memory_utilization") or 0.3)
        parts[f"vLLM reservation ({share:g} x GPU)"] = share * (setup.gpu_mem_gib or 0) * GiB
    static = int(sum(parts.values()))

    L, P, T = tokens.sequence, tokens.prompt_tokens, tokens.completion_tokens
    h, kv, inter, heads, layers = sizes.hidden, sizes.kv_dim, sizes.intermediate, sizes.heads, sizes.layers
    flash = setup.flash_attention
    rows = int(t["per_device_train_batch_size"]) * int(
        t.get("steps_per_generation") or t["gradient_accumulation_steps"]
    )
    b = int(t["per_device_train_batch_size"])
    G = int(t["num_generations"])
    vh, vi, vheads = sizes.vision_hidden, sizes.vision_intermediate, sizes.vision_heads
    patches = tokens.vision_patches
    window = min(patches, 64 * 4)  # Qwen2.5-VL window attention: 112/14 = 8x8 patches per window (math path)
    vis_saved = sizes.vision_layers * patches * _layer_saved(vh, vh, vi, vheads, window, act, flash)
    vis_transient = patches * _layer_transient(vh, vi, vheads, window, act, flash)
    features = patches // sizes.merge**2 * h * act  # vision features of one video (LLM width)
    # the processor's float32 patches of every row of the generation batch, kept for the whole step (each pass with
    # the video concatenates its rows' patches again)
    pixels = rows * patches * 3 * sizes.temporal_patch * sizes.patch**2 * 4

    # rollout: KV cache of R rows at the full length + the prefill's largest layer transient + the prompts' video
    kv_cache = rows * L * layers * 2 * kv * act
    prefill = rows * P * (_layer_transient(h, inter, heads, P, act, flash) + h * act) + rows * vis_transient
    # the video processor on the generation batch (one call per row, G rows per video): ~3 float32 copies of the
    # frames (converted, normalised, patchified) + the decoded uint8 frames (measured: benchmarks/plan_memory.py)
    phases = {"inputs (video processor)": 3.25 * pixels, "rollout (generate)": pixels + kv_cache + prefill}
    if t.get("use_vllm"):  # generation runs inside vLLM's reservation; only the batch's inputs stay here
        phases["rollout (generate)"] = pixels
    elif t["method"] == "t_grpo":
        shuffled = (rows // G) * int(t.get("tgrpo_num_shuffled") or max(1, G // 2))
        phases["rollout (generate)"] = max(
            phases["rollout (generate)"], shuffled / rows * (kv_cache + prefill)
        )
    # no-grad scoring passes: TRL's ref/old passes use b rows; the selection's use ktr_score_batch_size (all R)
    score_rows = b
    if t["method"] in ("ktr", "entropy"):
        score_rows = int(t.get("ktr_score_batch_size") or rows)
    scoring = score_rows * L * (_layer_transient(h, inter, heads, L, act, flash) + h * act)
    scoring += pixels + (rows // G) * features + vis_transient
    if t["method"] in ("ktr", "entropy") and t["ktr_distance"] != "logprob":
        scoring += 3 * G * T * sizes.vocab * 4  # full and perturbed float32 logits of one group
    if t["method"] == "tw_grpo" and not t["tw_weight_grad"]:
        scoring += 2 * G * T * sizes.vocab * 4
    phases["scoring (no grad)"] = scoring
    # loss: one micro-batch of b rows, forward + backward
    per_token = _layer_saved(h, kv, inter, heads, L, act, flash)
    acts_no_gc = b * L * layers * per_token + min(b, rows // G or 1) * vis_saved
    one_layer = b * L * per_token + min(b, rows // G or 1) * vis_saved / sizes.vision_layers
    acts_gc = (
        b * L * layers * h * act
        + one_layer
        + min(b, rows // G or 1) * sizes.vision_layers * patches * vh * act
    )
    logits = b * T * sizes.vocab * 4 * 3 if (t["method"] == "tw_grpo" and t["tw_weight_grad"]) else 0
    gc = bool(t.get("gradient_checkpointing"))
    # + the micro-batch's patches concatenated; without checkpointing + one layer's gradient buffers of the backward
    # (with it, the recomputed layer is already in acts_gc)
    loss_no_gc = grads + acts_no_gc + logits + pixels * b / rows + one_layer
    loss_gc = grads + acts_gc + logits + pixels * b / rows
    phases["loss (forward+backward)"] = loss_gc if gc else loss_no_gc
    peak_phase = max(phases, key=phases.get)
    others = max(v for k, v in phases.items() if not k.startswith("loss"))
    return Estimate(
        parts={**parts, "gradients (loss phase)": grads},
        phases=phases,
        peak_phase=peak_phase,
        static=static,
        peak=int(static + phases[peak_phase]),
        peak_no_gc=int(static + max(others, loss_no_gc)),
        peak_gc=int(static + max(others, loss_gc)),
    )


def forward_flops(t: dict, sizes, tokens, passes: Passes) -> float:
    """Forward FLOPs per GPU per generation batch, ~2 x parameters x tokens per pass (attention's L^2 term left out):
    the rollout (prefill + every decode step = R x L tokens; T-GRPO's shuffled rollout on its rows), the no-grad
    LM passes on R rows, the loss forward on R rows, and the vision tower on the videos each vision pass encodes
    (R for the rollout and TRL's passes, the distinct R / G for the selection and the loss)."""
    R, G, L = passes.rows, int(t["num_generations"]), tokens.sequence
    lm, vis = sizes.params - sizes.vision_params, sizes.vision_params
    rollout_rows = R
    if t["method"] == "t_grpo":
        rollout_rows += (R // G) * int(t.get("tgrpo_num_shuffled") or max(1, G // 2))
    lm_tokens = rollout_rows * L  # prefill + decode steps
    lm_tokens += sum(n for k, n in passes.lm.items() if k != "loss") * R * L + R * L * (
        passes.lm.get("loss", 0) > 0
    )
    videos = rollout_rows + sum(n for k, n in passes.vision.items() if k in ("old_logps", "ref_logps")) * R
    videos += passes.vision.get("selection", 0) * (R // G) + max(R // G, 1) * passes.vision.get("loss", 0)
    return 2.0 * lm * lm_tokens + 2.0 * vis * videos * tokens.vision_patches
