"""`videoktr plan`'s memory estimate against the measured peak of one training step on CPU (not a test).

    python benchmarks/plan_memory.py [--out runs/plan_memory]

For the tiny model (TinyModelConfig defaults) and a ~14M-parameter model of the same family, with gradient
checkpointing off and on: build the model and a synthetic dataset, build the trainer (model loaded, weights
resident), then reset the process's peak RSS (Linux: ``echo 5 > /proc/self/clear_refs`` resets VmHWM), run one
optimizer step (rollout, KTR selection, loss, backward, AdamW step) and read VmHWM. Measured = VmHWM - VmRSS before
the step: the optimizer states, gradients and the largest phase. Estimated = the plan's peak minus the weights (and
reference copy), which were resident before the step, with the CPU attention setting (``--cpu``: the attention
matrix is counted). Each case runs in a fresh process. The last table is the figure to report (ratio = estimate /
measured; the goal is within 30%).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from transformers import TrainerCallback

CASES = {
    "tiny": {},
    "14M": dict(
        hidden_size=256,
        num_hidden_layers=12,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=1152,
        mrope_section=(4, 6, 22),
        vision_hidden_size=128,
        vision_depth=2,
        vision_num_heads=2,
        vision_intermediate_size=256,
    ),
}
TRAINER = dict(
    method="ktr",
    use_cpu=True,
    bf16=False,
    report_to="none",
    seed=0,
    max_steps=2,
    num_generations=8,
    per_device_train_batch_size=16,
    max_completion_length=96,
    learning_rate=1e-4,
    beta=0.0,
    video_frames=16,
    video_max_pixels=112 * 112,
    video_min_pixels=112 * 112,
    prompt_template="short",
    length_bonus=False,
    ktr_skip_zero_advantage=False,  # score every row (the plan's upper bound) whatever the rewards
    logging_steps=1,
    save_strategy="no",
    disable_tqdm=True,
)


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(case: str, gc: bool, out: Path) -> dict:
    """One case in this process: the measured step delta and the plan's estimate (bytes)."""
    import torch

    from videoktr.data.schema import load_records
    from videoktr.data.synthetic import make_synthetic, synthetic_corpus
    from videoktr.models.tiny import TinyModelConfig, build_tiny_model
    from videoktr.plan.commands import make_plan
    from videoktr.plan.memory import Setup
    from videoktr.training.recipe import Recipe, build_trainer

    torch.manual_seed(0)
    data = make_synthetic(out / "data", n_train=16, n_test=1, seed=0, num_frames=16, height=112, width=112)
    records = load_records(data["train_sft"])
    model_dir = out / f"model_{case}"
    if not (model_dir / "config.json").is_file():
        build_tiny_model(model_dir, corpus=synthetic_corpus(records), config=TinyModelConfig(**CASES[case]))
    trainer_fields = {**TRAINER, "gradient_checkpointing": gc, "output_dir": str(out / f"run_{case}_{gc}")}
    recipe = Recipe(model=str(model_dir), data={"train": str(data["train"]), "root": str(data["root"])},
                    rewards=["accuracy", "format"], trainer=trainer_fields)  # fmt: skip
    trainer = build_trainer(recipe)
    text_tokens = _prompt_text_tokens(trainer, records[0])
    plan = make_plan(recipe, Setup(flash_attention=False), frame_size="112x112", text_tokens=text_tokens)
    params = sum(p.numel() for p in trainer.model.parameters())
    window = StepWindow(measured_step=2)
    trainer.add_callback(window)
    phases = PhaseSampler(trainer, window)
    with phases:
        trainer.train()
    e = plan.estimate
    resident = e.static  # weights (+ reference) and the optimizer states: resident before step 2
    return {
        "case": case,
        "gradient_checkpointing": gc,
        "params": params,
        "plan_params": plan.sizes.params,
        "sequence": plan.tokens.sequence,
        "measured": window.peak - window.before,
        "estimated": e.peak - resident,
        "peak_phase": e.peak_phase,
        "phases": e.phases,
        "measured_phases": phases.peaks(window.before),
    }


class StepWindow(TrainerCallback):
    """Trainer callback: RSS before optimizer step ``measured_step`` (freed heap returned first) and the peak RSS
    during it (VmHWM reset at its start). Step 1 warms up (optimizer states created, code pages touched)."""

    def __init__(self, measured_step: int):
        self.step, self.before, self.peak = measured_step, None, None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step - 1:
            import ctypes
            import gc

            gc.collect()
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            self.before = _status("VmRSS")
            Path("/proc/self/clear_refs").write_text("5")

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.peak = _status("VmHWM")


class PhaseSampler:
    """Samples VmRSS every 2 ms in a thread and labels each sample with the trainer phase running (the rollout's
    video processor, generate, the selection's no-grad passes, the loss forward + backward); :meth:`peaks` = the largest RSS above
    ``before`` per phase during the measured step."""

    PHASES = {  # trainer method -> the plan's phase it runs
        "_tokenize_prompts": "inputs (video processor)",
        "_generate_single_turn": "rollout (generate)",
        "_attach_selection": "scoring (no grad)",
        "_compute_loss": "loss (forward+backward)",
    }

    def __init__(self, trainer, window):
        import threading

        self.window, self.phase, self.samples = window, "other", []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        for name, label in self.PHASES.items():
            setattr(trainer, name, self._labelled(getattr(trainer, name), label))
        backward = trainer.accelerator.backward
        trainer.accelerator.backward = self._labelled(backward, "loss (forward+backward)")

    def _labelled(self, fn, label):
        def wrapper(*args, **kwargs):
            previous, self.phase = self.phase, label
            try:
                return fn(*args, **kwargs)
            finally:
                self.phase = previous

        return wrapper

    def _run(self):
        import time

        while not self._stop.is_set():
            if self.window.before is not None and self.window.peak is None:
                self.samples.append((self.phase, _status("VmRSS")))
            time.sleep(0.002)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def peaks(self, before: int) -> dict:
        out: dict[str, int] = {}
        for phase, rss in self.samples:
            out[phase] = max(out.get(phase, 0), rss - before)
        return out


def _prompt_text_tokens(trainer, record) -> int:
    """Prompt tokens that are not video tokens, from the real processor on one rollout prompt."""
    from videoktr.training.rollout import prompt_text

    row = trainer.train_dataset[0]
    processor = trainer.processing_class
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt_text(row["prompt"])}]}],
        tokenize=False, add_generation_prompt=True,
    )  # fmt: skip
    ids = processor.tokenizer(text)["input_ids"]
    return len(ids) - 1  # the one video placeholder becomes the video tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/plan_memory"))
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: one case, prints JSON
    parser.add_argument("--gc", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print("RESULT " + json.dumps(measure(args.case, bool(args.gc), args.out)))
        return
    rows = []
    for case in CASES:
        for gc in (0, 1):
            cmd = [sys.executable, __file__, "--out", str(args.out), "--case", case, "--gc", str(gc)]
            # a fixed mmap threshold: freed tensors go back to the OS, so RSS follows what is allocated
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536",
                   "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}  # fmt: skip
            result = subprocess.run(cmd, capture_output=True, text=True, env=env)
            line = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")]
            if result.returncode or not line:
                sys.exit(f"{case} gc={gc} failed:\n{result.stderr[-3000:]}")
            rows.append(json.loads(line[0][len("RESULT ") :]))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'model':<6} {'params':>10} {'seq':>5} {'grad ckpt':>9} {'measured MiB':>13} {'estimated MiB':>14} "
          f"{'ratio':>6}  peak phase (plan)")  # fmt: skip
    for r in rows:
        print(f"{r['case']:<6} {r['params']:>10,} {r['sequence']:>5} {'on' if r['gradient_checkpointing'] else 'off':>9} "
              f"{r['measured'] / 2**20:>13.1f} {r['estimated'] / 2**20:>14.1f} {r['estimated'] / r['measured']:>6.2f}  "
              f"{r['peak_phase']}")  # fmt: skip

    print("measured peak above the pre-step RSS per phase (MiB) vs the plan's:")
    for r in rows:
        print(
            f"  {r['case']} gc={int(r['gradient_checkpointing'])}: "
            + ", ".join(
                f"{k} {r['measured_phases'].get(k, 0) / 2**20:.0f} vs {v / 2**20:.0f}"
                for k, v in r["phases"].items()
            )
        )


if __name__ == "__main__":
    main()
