"""The ``videoktr`` command: parse, validate, dispatch. Each subcommand lives beside the code it drives.

A command module exposes ``add_parser(subparsers)``, which registers its parser and sets ``func`` to a callable
``(args) -> int``. Command modules import only the standard library at module level, so ``videoktr --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> module that registers it (kept in the order shown by --help)
COMMAND_MODULES = {
    "env": "videoktr.envinfo",
    "make-synthetic": "videoktr.data.commands",
    "validate-data": "videoktr.data.commands",
    "qai": "videoktr.data.qai",
    "build-tiny-model": "videoktr.models.commands",
    "plan": "videoktr.plan.commands",
    "train": "videoktr.training.commands",
    "eval": "videoktr.eval.commands",
    "demo": "videoktr.demo",
    "ablate": "videoktr.ablate",
    "frames": "videoktr.frames.commands",
    "analyze": "videoktr.analysis.analyze",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videoktr",
        description="Token-level RL for video LLMs: Video-KTR, GRPO, entropy-only, T-GRPO and TW-GRPO on TRL.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    registered: set[str] = set()
    for module_name in dict.fromkeys(COMMAND_MODULES.values()):
        importlib.import_module(module_name).add_parser(subparsers)
        registered.update(subparsers.choices)
    missing = set(COMMAND_MODULES) - registered
    if missing:  # a module forgot to register what COMMAND_MODULES promises
        raise RuntimeError(f"commands not registered: {sorted(missing)}")
    return parser


def main(argv: list[str] | None = None) -> int:
    from videoktr.errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"videoktr {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
