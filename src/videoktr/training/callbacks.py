"""Trainer callbacks of the demo and ablation: one rich progress bar instead of per-log prints, a wall-clock budget,
held-out accuracy evaluated during RL."""

from __future__ import annotations

import time


def quiet_progress(trainer, title: str):
    """Replace transformers' per-log printing with one rich progress bar showing the latest reward/loss."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)

    class _Rich(TrainerCallback):
        def __init__(self):
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"),
            )
            self.task = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.progress.start()
            self.task = self.progress.add_task(title, total=state.max_steps, status="")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.task is None or not logs:
                return
            shown = [
                f"{k.split('/')[-2] if k.endswith('/mean') else k}={logs[k]:.3f}"
                for k in ("loss", "rewards/accuracy/mean", "ktr/selected_frac/union")
                if k in logs
            ]
            self.progress.update(self.task, status=" ".join(shown))

        def on_step_end(self, args, state, control, **kwargs):
            self.progress.update(self.task, completed=state.global_step)

        def on_train_end(self, args, state, control, **kwargs):
            self.progress.stop()

    trainer.add_callback(_Rich())


class TimeBudget:
    """A ``TrainerCallback`` that stops training once ``seconds`` have passed (recorded in the results); the
    ``seconds`` attribute of ``excluded`` (e.g. a :class:`HeldOutEval`: time spent evaluating) does not count."""

    def __new__(cls, seconds: float, excluded=None):
        from transformers import TrainerCallback

        class _Budget(TrainerCallback):
            def __init__(self):
                self.start = time.time()
                self.stopped_early = False

            def on_step_end(self, args, state, control, **kwargs):
                spent = time.time() - self.start - (excluded.seconds if excluded is not None else 0.0)
                if spent > seconds:
                    control.should_training_stop = True
                    self.stopped_early = True

        return _Budget()


def rollout_generation(args):
    """``GenerationSettings`` that sample exactly as the trainer's rollouts (TRL ``GRPOConfig``): temperature,
    top_p, top_k (0 = off), min_p, repetition_penalty and the completion length of ``args`` (a ``KTRConfig``)."""
    from videoktr.eval.generation import GenerationSettings

    return GenerationSettings(
        max_new_tokens=args.max_completion_length,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k or 0,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )


class HeldOutEval:
    """A ``TrainerCallback`` that evaluates held-out accuracy during RL, greedy and sampled as the rollouts sample.

    At the start of training (step 0, or the resumed step), every ``every`` optimiser steps and at the end, the
    policy answers ``items`` (``BenchItem`` list) twice: greedy, and sampled with :func:`rollout_generation` of the
    trainer's args (fixed sampling seed per batch, so the points differ only by the weights). One JSON line per point
    is appended to ``out_file``: {"step", "greedy", "sampled" (accuracies), "greedy_by_category",
    "sampled_by_category", "n_items", "seconds"}. A fresh run (step 0) empties the file; a resumed run drops the
    points after its step. Training is unaffected: the model is put back in train mode and torch's CPU random
    state is restored after each evaluation (the sampled pass reseeds it). One difference from the rollouts:
    TRL also suppresses the image placeholder token when sampling; the evaluation does not (it is never sampled
    by a trained model, and a completion containing it would be scored as any other text).
    """

    def __new__(cls, items, sampling, video_root, template: str, every: int, out_file, batch_size: int = 32):
        import json
        from pathlib import Path

        import torch
        from transformers import TrainerCallback

        from videoktr.eval.generation import GenerationSettings
        from videoktr.eval.runner import evaluate

        path = Path(out_file)

        class _HeldOut(TrainerCallback):
            def __init__(self):
                self.done: set[int] = set()
                self.seconds = 0.0  # spent evaluating (left out of a TimeBudget)

            def _run(self, args, state, model, processor) -> None:
                if state.global_step in self.done:
                    return
                rng, was_training = torch.random.get_rng_state(), model.training
                model.eval()
                start, point = time.time(), {"step": state.global_step}
                greedy = GenerationSettings(max_new_tokens=args.max_completion_length, temperature=0.0)
                for name, generation in (("greedy", greedy), ("sampled", rollout_generation(args))):
                    _, summary = evaluate(
                        model, processor, items, sampling, video_root=video_root, generation=generation,
                        batch_size=batch_size, template=template,
                    )  # fmt: skip
                    point[name], point[f"{name}_by_category"] = summary["accuracy"], summary["by_category"]
                point.update(n_items=len(items), seconds=round(time.time() - start, 2))
                self.seconds += time.time() - start
                torch.random.set_rng_state(rng)
                model.train(was_training)
                with path.open("a") as handle:
                    handle.write(json.dumps(point) + "\n")
                self.done.add(state.global_step)

            def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
                kept = []
                if state.global_step > 0 and path.is_file():
                    lines = path.read_text().splitlines()
                    kept = [line for line in lines if json.loads(line)["step"] <= state.global_step]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(line + "\n" for line in kept))
                self.done = {json.loads(line)["step"] for line in kept}
                self._run(args, state, model, processing_class)

            def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
                if state.global_step % every == 0:
                    self._run(args, state, model, processing_class)

            def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
                self._run(args, state, model, processing_class)

        if every < 1:
            raise ValueError(f"HeldOutEval: every={every} must be >= 1 (leave the callback out instead)")
        return _HeldOut()
