"""``videoktr train --config FILE.yaml [key=value ...]``: RL training from a recipe (see configs/)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    if args.list_fields:
        import dataclasses

        from videoktr.training.config import KTRConfig

        # ours: the fields KTRConfig adds and the TRL fields it redefines with its own default and help (beta,
        # loss_type, use_bias_correction_kl); an inherited field is the parent's own Field object
        parent = {f.name: f for f in dataclasses.fields(KTRConfig.__mro__[1])}
        for f in dataclasses.fields(KTRConfig):
            if parent.get(f.name) is not f:
                print(f"{f.name}: {f.metadata.get('help', '')}")
        print("(plus every trl.GRPOConfig / transformers.TrainingArguments field)")
        return 0
    if not args.config:
        from videoktr.errors import UserError

        raise UserError("--config FILE.yaml is required (recipes are in configs/)")
    from videoktr.training.recipe import build_trainer, load_recipe, make_config, save_run_files

    recipe = load_recipe(args.config, args.overrides)
    from videoktr.training.checkpoint import resolve_resume  # imports torch: after the recipe is read

    config = make_config(recipe.trainer)
    _check_sharding(config)
    if not args.skip_plan_check:  # a recipe that cannot fit is refused before the model loads (videoktr plan)
        from videoktr.plan.commands import check_before_load

        check_before_load(recipe)
    # the checkpoint is found (or refused) before the data is checked and the model loads
    resume = resolve_resume(recipe.resume_from_checkpoint, config.output_dir, not config.save_only_model)
    trainer = build_trainer(recipe, config=config)
    if trainer.accelerator.is_main_process:
        save_run_files(recipe, trainer.args.output_dir)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(trainer.args.output_dir)
    trainer.processing_class.save_pretrained(trainer.args.output_dir)
    return 0


def _check_sharding(config) -> None:
    """Refuse an FSDP launch on CPU: accelerate 1.16 picks FSDP only for GPU-type devices, so with use_cpu the FSDP
    config is silently replaced by DDP (every process holds the whole model); docs/results.md, issue 14."""
    import os

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and config.use_cpu:
        from videoktr.errors import UserError

        raise UserError(
            "an FSDP accelerate config with use_cpu: accelerate runs it as plain DDP on CPU (no sharding); launch "
            "with configs/accelerate/multi_cpu.yaml for CPU data parallelism, or run FSDP on GPUs"
        )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="RL training (Video-KTR, GRPO, entropy, T-GRPO, TW-GRPO) from a YAML recipe",
        description="Train from a recipe. Overrides: key=value, e.g. method=grpo trainer.learning_rate=1e-5 lora.r=8",
    )
    parser.add_argument("--config", help="recipe YAML (configs/*.yaml)")
    parser.add_argument(
        "--list-fields", action="store_true", help="list the Video-KTR config fields and exit"
    )
    parser.add_argument(
        "--skip-plan-check",
        action="store_true",
        help="train even if `videoktr plan` finds the sequence longer than the model's limit or the memory "
        "estimate above the GPU's memory",
    )
    parser.add_argument(
        "overrides", nargs="*", help="key=value overrides (dotted keys; bare keys go to trainer)"
    )
    parser.set_defaults(func=run)
