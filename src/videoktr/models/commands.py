"""`videoktr build-tiny-model`: a tiny random video LLM (tokenizer, processor, weights) of a supported family."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "build-tiny-model",
        help="build a tiny random video LLM checkpoint locally (Qwen2.5-VL, Qwen2-VL, Qwen3-VL, Qwen3.5)",
        description="Train a small byte-level BPE tokenizer with Qwen2.5-VL's special tokens and chat template, "
        "build the real Qwen2.5-VL processor and a randomly initialised model, and save them with save_pretrained.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory (created)")
    parser.add_argument(
        "--corpus",
        nargs="+",
        type=Path,
        default=None,
        help="JSON files for the tokenizer: a list of strings, or a list of records (Video-R1 schema) whose string "
        "fields (and lists of strings, e.g. options) are used. Default: a built-in corpus of prompt-template text.",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    parser.add_argument(
        "--arch",
        default="qwen2_5_vl",
        help="model family: qwen2_5_vl (default), qwen2_vl, qwen3_vl, qwen3_5 (transformers' own classes and "
        "processors; see videoktr.models.families)",
    )
    parser.set_defaults(func=run)


def _texts_of(item, path: Path, index: int) -> list[str]:
    if isinstance(item, str):
        return [item]
    if isinstance(item, dict):
        texts = []
        for value in item.values():
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, list):
                texts.extend(v for v in value if isinstance(v, str))
        return texts
    from videoktr.errors import UserError

    raise UserError(
        f"{path}: item {index} is a {type(item).__name__}; expected a string or a record (object)"
    )


def read_corpus(paths: list[Path]) -> list[str]:
    """All text of the corpus files (see ``--corpus``)."""
    from videoktr.errors import UserError

    texts: list[str] = []
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"{path}: cannot read the corpus as JSON ({err})") from err
        if not isinstance(data, list):
            raise UserError(
                f"{path}: the corpus must be a JSON list of strings or records, got {type(data).__name__}"
            )
        for index, item in enumerate(data):
            texts.extend(_texts_of(item, path, index))
    if not texts:
        raise UserError(f"no text found in {', '.join(map(str, paths))}; give files with strings or records")
    return texts


def run(args: argparse.Namespace) -> int:
    from videoktr.models.families import FAMILIES
    from videoktr.models.tiny import DEFAULT_CORPUS, TinyModelConfig, build_tiny_model

    family = FAMILIES.get(args.arch)  # an unknown --arch is refused with the supported list
    corpus = None if args.corpus is None else DEFAULT_CORPUS + read_corpus(args.corpus)
    config = TinyModelConfig(**{**family.tiny_overrides, "seed": args.seed})
    path = build_tiny_model(args.out, corpus=corpus, config=config, arch=args.arch)
    print(f"tiny {family.label} saved to {path}")
    return 0
