"""The installed vLLM, checked before a model loads: the one release this package's video requests are written for.

vLLM pins torch and transformers exactly; of its releases only 0.33.0 resolves with this package's ranges (it
brings torch 2.14.0, torchvision 0.29.0 and transformers >=5.16.1,<5.21, so transformers 5.20.x here). The request
layout of ``videoktr.vllm.payload`` was read in that release's code; another release is refused rather than trusted.
"""

from __future__ import annotations

import importlib
import importlib.metadata

VLLM_RELEASE = "0.33.0"
PIP_COMMAND = "pip install 'videoktr[vllm]'"
IMPLIES = "vllm==0.33.0, which installs torch==2.14.0, torchvision==0.29.0 and transformers 5.20.x"


def vllm_problem() -> str | None:
    """Why vLLM rollouts cannot run in this environment (not installed, another release, does not import), or
    None when the supported release imports."""
    try:
        version = importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return f"vLLM is not installed; install it with: {PIP_COMMAND}  ({IMPLIES})"
    if version != VLLM_RELEASE:
        return (
            f"vLLM {version} is installed, but the video requests are written for vLLM {VLLM_RELEASE}; "
            f"install it with: {PIP_COMMAND}  ({IMPLIES})"
        )
    try:
        importlib.import_module("vllm")
    except Exception as err:  # a CUDA/torch mismatch surfaces as any error at import
        return (
            f"vLLM {version} is installed but does not import ({type(err).__name__}: {err}); reinstall with: "
            f"{PIP_COMMAND}  ({IMPLIES}; vLLM needs a CUDA GPU)"
        )
    return None


def check_vllm_config(config) -> None:
    """Refuse, with the field and the fix, what a ``KTRConfig`` with use_vllm cannot run: the video requests go
    through TRL's colocated engine only."""
    if problem := vllm_problem():
        raise ValueError(f"use_vllm=True is refused: {problem}; or set use_vllm: false")
    if config.vllm_mode != "colocate":
        raise ValueError(
            f"vllm_mode={config.vllm_mode!r} is refused: TRL 1.16's server client sends token ids and image "
            "features only (VLLMClient.generate), so a video cannot reach the server; use vllm_mode: colocate"
        )
    if config.vllm_tensor_parallel_size != 1:
        raise ValueError(
            f"vllm_tensor_parallel_size={config.vllm_tensor_parallel_size} is refused: the video requests are "
            "not gathered across a tensor-parallel group yet; use vllm_tensor_parallel_size: 1"
        )
    if config.selection_signals and config.ktr_full_logps == "generation":
        raise ValueError(
            "ktr_full_logps='generation' records the logits of transformers' generate, which vLLM rollouts do "
            "not run; with use_vllm: true set ktr_full_logps: forward"
        )
