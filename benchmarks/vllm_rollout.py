"""Rollout tokens/s of vLLM (colocate) against transformers ``generate``, each in one Video-KTR step (GPU only).

    python benchmarks/vllm_rollout.py --model Qwen/Qwen2.5-VL-3B-Instruct --out runs/gpu_smoke

NOT RUN: written on a machine without a GPU (docs/vllm.md). ``benchmarks/gpu_smoke.sh`` installs the extra and
runs this. Data: the synthetic video suite (``make_synthetic``, 224x224 clips of 16 frames). Each backend runs one
training step of method ktr (``max_steps: 1``) with the same seed and prompts; the generation call
(``_generate_single_turn``: for vLLM also TRL's weight sync into the engine) is timed and its completion tokens
counted. The last lines are the figures to report.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path


def recipe(args, use_vllm: bool, data: dict):
    from videoktr.training.recipe import Recipe

    trainer = dict(
        method="ktr",
        output_dir=str(Path(args.out) / ("vllm" if use_vllm else "hf")),
        bf16=True,
        report_to="none",
        seed=0,
        max_steps=1,
        num_generations=args.generations,
        per_device_train_batch_size=args.prompts * args.generations,
        max_completion_length=args.max_completion,
        temperature=1.0,
        video_frames=16,
        video_max_pixels=128 * 28 * 28,
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        use_vllm=use_vllm,
        ktr_full_logps="forward",  # the same attribution passes for both backends
        gradient_checkpointing=True,
    )
    if use_vllm:
        trainer.update(
            vllm_mode="colocate",
            vllm_gpu_memory_utilization=args.gpu_memory_utilization,
            vllm_max_model_length=args.max_model_length,
        )
    return Recipe(model=args.model, data=data, rewards=["accuracy", "format"], trainer=trainer)


def one_step(args, use_vllm: bool, data: dict) -> tuple[int, float, dict]:
    """(completion tokens, seconds in the generation call, last log) of one training step."""
    import torch

    from videoktr.training.recipe import build_trainer

    trainer = build_trainer(recipe(args, use_vllm, data))
    counted = {"tokens": 0, "seconds": 0.0}
    inner = trainer._generate_single_turn

    def timed(prompt_ids, *rest, **kwargs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        completion_ids, logprobs = inner(prompt_ids, *rest, **kwargs)
        torch.cuda.synchronize()
        counted["seconds"] += time.perf_counter() - start
        counted["tokens"] += sum(len(ids) for ids in completion_ids)
        return completion_ids, logprobs

    trainer._generate_single_turn = timed
    trainer.train()
    log = trainer.state.log_history[-1] if trainer.state.log_history else {}
    del trainer
    gc.collect()
    torch.cuda.empty_cache()
    return counted["tokens"], counted["seconds"], log


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="HF model id or local Qwen2.5-VL checkpoint")
    parser.add_argument("--out", default="runs/gpu_smoke")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step (default 4)")
    parser.add_argument("--generations", type=int, default=8, help="G (default 8)")
    parser.add_argument("--max-completion", type=int, default=256)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.35)
    parser.add_argument("--max-model-length", type=int, default=4096)
    args = parser.parse_args()

    import torch

    from videoktr.data.synthetic import make_synthetic

    if not torch.cuda.is_available():
        raise SystemExit("vllm_rollout: no CUDA GPU; this benchmark needs one")
    paths = make_synthetic(Path(args.out) / "data", n_train=args.prompts, n_test=1, seed=0, num_frames=16,
                           height=224, width=224)  # fmt: skip
    data = {"train": str(paths["train"]), "root": str(paths["root"])}
    results = {}
    for name, use_vllm in (("hf", False), ("vllm", True)):
        tokens, seconds, log = one_step(args, use_vllm, data)
        results[name] = tokens / seconds
        print(
            f"{name}: {tokens} completion tokens in {seconds:.2f} s = {tokens / seconds:.1f} tokens/s; log {log}"
        )
    print(f"rollout tokens/s: hf {results['hf']:.1f}, vllm {results['vllm']:.1f}, "
          f"vllm/hf = {results['vllm'] / results['hf']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
