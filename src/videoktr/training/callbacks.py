"""Trainer callbacks of the demo and ablation: one rich progress bar instead of per-log prints, a wall-clock budget."""

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
    """A ``TrainerCallback`` that stops training once ``seconds`` have passed (recorded in the results)."""

    def __new__(cls, seconds: float):
        from transformers import TrainerCallback

        class _Budget(TrainerCallback):
            def __init__(self):
                self.start = time.time()
                self.stopped_early = False

            def on_step_end(self, args, state, control, **kwargs):
                if time.time() - self.start > seconds:
                    control.should_training_stop = True
                    self.stopped_early = True

        return _Budget()
