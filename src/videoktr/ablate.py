"""Command registration (placeholder: being built)."""

import argparse


def _todo(args: argparse.Namespace) -> int:
    raise NotImplementedError(f"videoktr {args.command} is not built yet")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser("ablate").set_defaults(func=_todo)
