"""``videoktr env``: versions of the engine libraries and which optional pieces are usable here."""

from __future__ import annotations

import argparse
import importlib
import platform

LIBRARIES = (
    "torch",
    "torchvision",
    "transformers",
    "trl",
    "accelerate",
    "peft",
    "av",
    "datasets",
    "tokenizers",
)
OPTIONAL = {
    "deepspeed": "ZeRO-2/3 configs in configs/accelerate/ (GPU)",
    "vllm": "video rollouts (use_vllm) and the eval backend; vLLM 0.33.0 only (GPU; docs/vllm.md)",
    "wandb": "report_to=wandb",
    "tensorboard": "report_to=tensorboard",
}


def _version(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except Exception as err:  # report why, do not hide it
        return f"not usable ({type(err).__name__}: {err})"
    return getattr(module, "__version__", "installed")


def collect() -> dict[str, object]:
    info: dict[str, object] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in LIBRARIES:
        info[name] = _version(name) or "missing"
    try:
        import torch

        info["cuda_available"] = torch.cuda.is_available()
        info["cuda_devices"] = torch.cuda.device_count()
        info["torch_threads"] = torch.get_num_threads()
    except Exception as err:
        info["cuda_available"] = f"unknown ({err})"
    for name, purpose in OPTIONAL.items():
        version = _version(name)
        info[f"optional/{name}"] = f"{version} - {purpose}"
    return info


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="videoktr environment")
    table.add_column("component")
    table.add_column("version / status")
    for key, value in collect().items():
        table.add_row(key, str(value))
    Console().print(table)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("env", help="print library versions and which optional pieces are usable")
    parser.set_defaults(func=run)
