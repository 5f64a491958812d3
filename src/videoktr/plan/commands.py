"""``videoktr plan --config RECIPE [--gpus N --gpu-mem GiB --zero S]``: will a recipe fit, and what does a step cost?

Reads the recipe and the model's config (a local ``config.json`` or a known published config), never the weights.
Prints the tokens of one sample, the sequence length against the model's limit, the rollouts per step, the passes
per step of the method, and a memory estimate per GPU. Exit 0 when it fits, 1 when it does not (sequence longer
than the model's limit, or estimate above ``--gpu-mem``), with what to change. ``videoktr train`` runs the same
check before the model loads (:func:`check_before_load`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from videoktr.errors import UserError

DEFAULT_FRAME_SIZE = "360x640"
DEFAULT_TEXT_TOKENS = 256
FIXES = {
    "sequence": "lower trainer.video_max_frames / video_frames, trainer.video_max_pixels or "
    "trainer.max_completion_length",
    "memory": "turn on trainer.gradient_checkpointing, lower trainer.per_device_train_batch_size (raise "
    "gradient_accumulation_steps to keep the batch), set trainer.ktr_score_batch_size, use ZeRO-3 "
    "(configs/accelerate/zero3.yaml), more GPUs, LoRA (lora: {r: 16}), or fewer frames / pixels",
}


def trainer_fields(trainer: dict) -> dict:
    """The recipe's trainer fields over KTRConfig's defaults, with the method defaults KTRConfig would fill
    (``beta``). No KTRConfig is built: a GPU recipe (bf16) cannot be on a machine without a GPU."""
    from videoktr.training.config import KTRConfig

    out = {}
    for f in dataclasses.fields(KTRConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    out.update(trainer)
    if out.get("beta") is None:
        out["beta"] = 0.0 if out["method"] == "tw_grpo" else 0.04
    return out


@dataclasses.dataclass
class Plan:
    model: str
    source: str
    sizes: object
    tokens: object
    passes: object
    estimate: object
    setup: object
    trainer: dict
    problems: list
    flops: float = 0.0

    def to_dict(self) -> dict:
        t, e, p, s = self.tokens, self.estimate, self.passes, self.sizes
        return {
            "model": self.model,
            "config_source": self.source,
            "params": s.params,
            "vision_params": s.vision_params,
            "max_positions": s.max_positions,
            "frames": t.frames,
            "frame_hw": [t.height, t.width],
            "vision_patches": t.vision_patches,
            "visual_tokens": t.visual_tokens,
            "prompt_tokens": t.prompt_tokens,
            "sequence": t.sequence,
            "rollouts_per_step": p.rows * p.generations_per_step * self.setup.gpus,
            "rows_per_generation_batch": p.rows,
            "vision_passes": p.vision,
            "lm_passes": p.lm,
            "memory_parts": e.parts,
            "memory_phases": e.phases,
            "peak_phase": e.peak_phase,
            "peak_bytes": e.peak,
            "peak_bytes_gc": e.peak_gc,
            "peak_bytes_no_gc": e.peak_no_gc,
            "forward_tflops_per_generation_batch": self.flops / 1e12,
            "gpus": self.setup.gpus,
            "zero": self.setup.zero,
            "problems": self.problems,
        }


def make_plan(recipe, setup, model: str | None = None, frame_size: str = DEFAULT_FRAME_SIZE,
              text_tokens: int = DEFAULT_TEXT_TOKENS) -> Plan:  # fmt: skip
    """The plan of a loaded recipe on ``setup`` (:class:`videoktr.plan.memory.Setup`)."""
    from videoktr.plan.memory import count_passes, estimate_memory, forward_flops
    from videoktr.plan.models import model_sizes, resolve_config
    from videoktr.plan.tokens import parse_frame_size, sample_tokens

    name = model or recipe.model
    config, source = resolve_config(str(name))
    sizes = model_sizes(config)
    t = trainer_fields(recipe.trainer)
    tokens = sample_tokens(t, sizes, parse_frame_size(frame_size), text_tokens)
    passes = count_passes(t)
    estimate = estimate_memory(t, sizes, tokens, setup, recipe.lora, recipe.freeze_vision)
    problems = []
    if tokens.sequence > sizes.max_positions:
        problems.append(
            f"sequence {tokens.sequence} tokens (prompt {tokens.prompt_tokens} incl. {tokens.visual_tokens} video "
            f"tokens + completion {tokens.completion_tokens}) > the model's max_position_embeddings "
            f"{sizes.max_positions}: {FIXES['sequence']}"
        )
    if setup.gpu_mem_gib is not None and estimate.peak > setup.gpu_mem_gib * 1024**3:
        problems.append(
            f"estimated peak {estimate.peak / 1024**3:.1f} GiB per GPU ({estimate.peak_phase}) > --gpu-mem "
            f"{setup.gpu_mem_gib:g} GiB: {FIXES['memory']}"
        )
    flops = forward_flops(t, sizes, tokens, passes)
    return Plan(str(name), source, sizes, tokens, passes, estimate, setup, t, problems, flops)


def format_plan(plan: Plan) -> str:
    from videoktr.plan.memory import GiB

    s, t, p, e, setup = plan.sizes, plan.tokens, plan.passes, plan.estimate, plan.setup
    frames = f"{t.frames}" if t.frames_exact else f"<= {t.frames} (fps sampling; video_max_frames)"
    lines = [
        f"model        {plan.model}: {s.family}, {s.params / 1e9:.3f} B parameters ({s.vision_params / 1e9:.3f} B "
        f"vision); config: {plan.source}",
        f"video        {frames} frames -> {t.height}x{t.width} pixels each (grid t,h,w = {t.grid}) -> "
        f"{t.vision_patches} vision patches, {t.visual_tokens} video tokens per sample",
        f"sequence     prompt {t.prompt_tokens} ({t.visual_tokens} video + {t.text_tokens} text, assumed) + "
        f"completion {t.completion_tokens} = {t.sequence} tokens; model limit {s.max_positions}",
        f"rollouts     {p.rows} per process per generation batch x {setup.gpus} GPU(s); "
        f"{p.generations_per_step:g} generation batch(es) per optimizer step -> "
        f"{p.rows * setup.gpus * p.generations_per_step:g} completions per step "
        f"({p.rows * setup.gpus * p.generations_per_step / int(plan.trainer['num_generations']):g} prompts x "
        f"G={plan.trainer['num_generations']})",
        f"passes       method {plan.trainer['method']}, per generation batch (upper bounds): "
        f"generate x{p.generate}; vision passes {p.vision_total} {p.vision}; LM passes {p.lm_total} {p.lm} "
        "(loss passes with gradient; the rest without)",
        f"compute      ~{plan.flops / 1e12:.1f} TFLOPs of forward passes per GPU per generation batch (2 x params x "
        "tokens; attention's L^2 term left out)",
        f"memory/GPU   {setup.gpus} GPU(s), ZeRO {setup.zero or 'off'}, gradient checkpointing "
        f"{'on' if plan.trainer.get('gradient_checkpointing') else 'off'}:",
    ]
    for name, value in e.parts.items():
        lines.append(f"  {name:<32}{value / GiB:9.2f} GiB")
    for name, value in e.phases.items():
        mark = "  <- peak" if name == e.peak_phase else ""
        lines.append(f"  phase {name:<26}{value / GiB:9.2f} GiB (+ static {e.static / GiB:.2f}){mark}")
    lines.append(
        f"  peak estimate {e.peak / GiB:.2f} GiB (gradient checkpointing on: {e.peak_gc / GiB:.2f}, off: "
        f"{e.peak_no_gc / GiB:.2f})"
        + (f"; GPU memory {setup.gpu_mem_gib:g} GiB" if setup.gpu_mem_gib else "")
    )
    lines.append("fits" if not plan.problems else "DOES NOT FIT:\n  - " + "\n  - ".join(plan.problems))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from videoktr.plan.memory import Setup
    from videoktr.training.recipe import load_recipe

    if args.gpus < 1 or (args.gpu_mem is not None and args.gpu_mem <= 0):
        raise UserError("--gpus must be >= 1 and --gpu-mem > 0 (GiB)")
    recipe = load_recipe(args.config, args.overrides)
    setup = Setup(gpus=args.gpus, gpu_mem_gib=args.gpu_mem, zero=args.zero, flash_attention=not args.cpu)
    plan = make_plan(recipe, setup, args.model, args.frame_size, args.text_tokens)
    print(json.dumps(plan.to_dict(), indent=1) if args.json else format_plan(plan))
    if plan.problems:
        print(f"videoktr plan: {args.config} does not fit (see above)", file=sys.stderr)
        return 1
    return 0


def setup_from_environment():
    """The Setup of the current launch: WORLD_SIZE and the DeepSpeed ZeRO stage accelerate exports, the memory of
    GPU 0 (None without a GPU, so no memory check on CPU)."""
    from videoktr.plan.memory import Setup

    gpus = int(os.environ.get("WORLD_SIZE", "1"))
    zero = int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "0") or 0)
    mem = None
    import torch

    if torch.cuda.is_available():
        mem = torch.cuda.get_device_properties(0).total_memory / 1024**3
    return Setup(gpus=gpus, gpu_mem_gib=mem, zero=zero, flash_attention=mem is not None)


def check_before_load(recipe) -> None:
    """``videoktr train``'s check before the model loads: refuse a recipe whose sequence exceeds the model's limit
    or (with a GPU) whose estimate exceeds the GPU's memory. Silent when the model's config cannot be read (the
    model load then says why)."""
    from videoktr.plan.models import resolve_config

    try:
        resolve_config(str(recipe.model))
    except UserError:
        return
    plan = make_plan(recipe, setup_from_environment())
    if plan.problems:
        raise UserError(
            "the plan check refuses this recipe before loading the model:\n  - "
            + "\n  - ".join(plan.problems)
            + f"\n(assumed: {DEFAULT_FRAME_SIZE} source frames, {DEFAULT_TEXT_TOKENS} prompt text tokens; see "
            "`videoktr plan --config ...`; pass --skip-plan-check to train anyway)"
        )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="will a recipe fit? tokens per sample, passes per step, memory per GPU (no model load)",
        description="Estimate a recipe's tokens per sample, sequence length against the model's limit, rollouts "
        "and forward passes per step, and memory per GPU, from the recipe and the model's config (a local "
        "config.json or a known published config). Exit 1 when it does not fit. See docs/plan.md.",
    )
    parser.add_argument("--config", required=True, help="recipe YAML (configs/*.yaml)")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs (processes) the run uses (default 1)")
    parser.add_argument(
        "--gpu-mem", type=float, default=None, help="memory per GPU in GiB (e.g. 80); checked"
    )
    parser.add_argument(
        "--zero", type=int, choices=(0, 2, 3), default=0,
        help="DeepSpeed ZeRO stage of the launch (configs/accelerate/zero2.yaml / zero3.yaml; 0 = plain DDP)",
    )  # fmt: skip
    parser.add_argument("--model", default=None, help="model name or directory instead of the recipe's")
    parser.add_argument(
        "--frame-size", default=DEFAULT_FRAME_SIZE, help="HEIGHTxWIDTH of the source videos (default 360x640)"
    )
    parser.add_argument(
        "--text-tokens", type=int, default=DEFAULT_TEXT_TOKENS,
        help="prompt text tokens incl. chat template and question (default 256; the video tokens are computed)",
    )  # fmt: skip
    parser.add_argument(
        "--cpu", action="store_true", help="attention without flash kernels (CPU): count the attention matrix"
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("overrides", nargs="*", help="key=value recipe overrides, as for train")
    parser.set_defaults(func=run)
