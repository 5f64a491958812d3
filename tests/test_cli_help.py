"""Every subcommand's ``--help`` prints its help and exits 0 (argparse formats every help string, so a stray ``%``
or a bad default shows up here)."""

from __future__ import annotations

import argparse

import pytest

from videoktr.cli import build_parser


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.extend(_commands(sub, (*prefix, name)))
    return out


COMMANDS = _commands(build_parser())


def test_every_registered_command_is_listed():
    assert {c[0] for c in COMMANDS if c} >= {"train", "eval", "demo", "ablate", "build-tiny-model"}
    assert ("eval", "score") in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "videoktr")
def test_help_works(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: videoktr" in capsys.readouterr().out


def test_train_list_fields_prints_every_field(capsys):
    from videoktr.cli import main

    assert main(["train", "--list-fields"]) == 0
    out = capsys.readouterr().out
    assert "ktr_fraction" in out or "method" in out
