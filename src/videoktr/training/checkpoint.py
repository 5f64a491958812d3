"""Resume that restores the run: model weights, optimizer, scheduler, RNG, data position and the rollout buffer.

What the engines save and what they miss (transformers 5.23, TRL 1.16):

- **Weights.** ``save_pretrained`` writes Qwen2.5-VL checkpoints in the hub layout (``visual.*``, ``model.layers.*``)
  and ``from_pretrained`` renames them to the module layout (``model.visual.*``, ``model.language_model.*``), but
  ``Trainer._load_from_checkpoint`` loads the file raw with ``strict=False``: every key misses and the resumed run
  silently continues from the base weights (huggingface/transformers#43701). :func:`load_model_weights` applies the
  model's own checkpoint conversion (the one ``from_pretrained`` uses) and refuses a checkpoint whose keys still do
  not match. Saving is left as is, so every checkpoint stays loadable by ``from_pretrained``, vLLM and eval.
- **Data position.** TRL's ``RepeatSampler`` draws each epoch's order from one generator seeded once, so a resumed
  run starts again from the first epoch's order. :class:`EpochRepeatSampler` draws epoch ``e``'s order as the
  ``e``-th draw from the seed (the same orders as TRL's in an uninterrupted run) whenever the loop sets the epoch.
- **Trainer state outside the engine:** TRL's micro-step counter and its buffer of generated completions (with
  ``steps_per_generation`` or ``num_iterations`` > 1 a checkpoint can fall between a generation and its last use),
  and our perturbation generator. :class:`ResumeMixin` writes them per process to ``videoktr_state[_<rank>].pt``
  beside the RNG state and restores them with it; ``selection.jsonl`` loses the records of steps after the
  checkpoint (they are generated again).
- **Incomplete checkpoints.** ``trainer_state.json`` is written last; a checkpoint without it (or without its
  weights / optimizer / our state) was cut off mid-save. :func:`resolve_resume` skips those with a warning naming them
  and picks the newest complete one; ``true`` with none is a :class:`UserError`.

DeepSpeed and FSDP checkpoints are loaded by their engines (not through :func:`load_model_weights`); LoRA checkpoints
hold the adapter only and PEFT loads it (tested in ``tests/training/test_resume.py``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch
from trl.trainer.utils import RepeatSampler

from videoktr.errors import UserError

logger = logging.getLogger(__name__)

STATE_FILE = "videoktr_state.pt"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


# ------------------------------------------------------------------------------------- finding a checkpoint
def checkpoint_problem(path: Path, needs_optimizer: bool = True) -> str | None:
    """Why ``path`` is not a complete checkpoint (cut off mid-save), or None when it is."""
    if not path.is_dir():
        return "not a directory"
    names = {p.name for p in path.iterdir()}
    missing = []
    if "trainer_state.json" not in names:
        missing.append("trainer_state.json")
    if not names & {*_WEIGHT_FILES, *_ADAPTER_FILES} and not any(n.startswith("global_step") for n in names):
        missing.append("model weights")
    if (
        needs_optimizer
        and "optimizer.pt" not in names
        and not any(n.startswith("global_step") for n in names)
    ):
        missing.append("optimizer.pt")
    if needs_optimizer and not any(n.startswith("videoktr_state") for n in names):
        missing.append(STATE_FILE)
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError) as err:
        return f"trainer_state.json unreadable ({err})"
    return None


def resolve_resume(value: Any, output_dir: str | Path, needs_optimizer: bool = True) -> str | None:
    """The checkpoint directory to resume from: ``value`` is None/false (start fresh), true (the newest complete
    ``checkpoint-N`` in ``output_dir``; incomplete ones are skipped with a warning naming them) or a path (which
    must be complete). Raises :class:`UserError` when there is nothing to resume from."""
    if value is None or value is False:
        return None
    if value is True:
        out = Path(output_dir)
        found = sorted(
            (int(m.group(1)), p)
            for p in (out.iterdir() if out.is_dir() else [])
            if (m := _CHECKPOINT_RE.match(p.name))
        )
        skipped = []
        for _, path in reversed(found):
            problem = checkpoint_problem(path, needs_optimizer)
            if problem is None:
                for name, why in skipped:
                    logger.warning(
                        "skipping incomplete checkpoint %s (%s); resuming from %s", name, why, path
                    )
                return str(path)
            skipped.append((path, problem))
        listing = "".join(f"\n  {path}: {why}" for path, why in skipped)
        raise UserError(
            f"resume_from_checkpoint=true: no complete checkpoint-N in {out}{listing}\n"
            "start a fresh run with resume_from_checkpoint=null (or another output_dir), or pass a checkpoint path"
        )
    if not isinstance(value, str | Path):
        raise UserError(f"resume_from_checkpoint={value!r}: use true, null or a checkpoint directory")
    problem = checkpoint_problem(Path(value), needs_optimizer)
    if problem is not None:
        raise UserError(
            f"resume_from_checkpoint={value}: not a complete checkpoint ({problem}); "
            "pass a complete checkpoint-N directory, or true for the newest complete one"
        )
    return str(value)


# ------------------------------------------------------------------------------------------------ weights
def _read_state_dict(checkpoint: Path) -> dict[str, torch.Tensor] | None:
    """The full-model state dict saved in ``checkpoint`` (single file or shards), or None if there is none."""
    from safetensors.torch import load_file

    for index_name, loader in (
        ("model.safetensors.index.json", lambda f: load_file(f, device="cpu")),
        ("pytorch_model.bin.index.json", lambda f: torch.load(f, map_location="cpu", weights_only=True)),
    ):
        index = checkpoint / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(loader(checkpoint / shard))
            return state
    if (checkpoint / "model.safetensors").is_file():
        return load_file(checkpoint / "model.safetensors", device="cpu")
    if (checkpoint / "pytorch_model.bin").is_file():
        return torch.load(checkpoint / "pytorch_model.bin", map_location="cpu", weights_only=True)
    return None


def to_model_keys(model, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename saved (hub layout) keys to ``model``'s module keys with the conversion ``from_pretrained`` applies."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, rename_source_key

    transforms = get_model_conversion_mapping(model)
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    if (
        converters
    ):  # tensor-changing conversions (fused experts...): not needed by Qwen2.5-VL, not supported here
        raise NotImplementedError(
            f"{type(model).__name__}: resume does not apply weight converters {converters}"
        )
    renamings = [t for t in transforms if not isinstance(t, WeightConverter)]
    target = model.state_dict()
    prefix = getattr(model, "base_model_prefix", None)
    return {rename_source_key(k, renamings, [], prefix, target)[0]: v for k, v in state_dict.items()}


def load_model_weights(model, checkpoint: str | Path) -> bool:
    """Load a full-model checkpoint into ``model`` (renaming keys as ``from_pretrained`` does). Returns False when
    ``checkpoint`` holds no full-model weights (an adapter checkpoint). Raises :class:`UserError` when keys are
    missing or unexpected (a checkpoint of another model) instead of silently keeping the old weights."""
    checkpoint = Path(checkpoint)
    saved = _read_state_dict(checkpoint)
    if saved is None:
        return False
    renamed = to_model_keys(model, saved)
    target = model.state_dict()
    seen: dict[int, str] = {}
    required = set()
    for (
        key,
        tensor,
    ) in target.items():  # a tied tensor (lm_head = embed_tokens) is loaded through its first name
        ptr = tensor.untyped_storage().data_ptr() if tensor.numel() else id(tensor)
        if ptr not in seen:
            seen[ptr] = key
            required.add(key)
    missing = sorted(required - set(renamed))
    unexpected = sorted(set(renamed) - set(target))
    if missing or unexpected:
        raise UserError(
            f"checkpoint {checkpoint} does not match the model: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]}); resume with the model it was trained from"
        )
    model.load_state_dict(renamed, strict=False)
    return True


# ------------------------------------------------------------------------------------------- data position
class EpochRepeatSampler(RepeatSampler):
    """TRL's ``RepeatSampler`` whose epoch ``e`` order is the ``e``-th draw from the seed, set by ``set_epoch``
    (the Trainer calls it every epoch, including the one it resumes in), so orders survive a restart."""

    def set_epoch(self, epoch: int) -> None:
        if self.shuffle and self.seed is not None:
            self.generator.manual_seed(self.seed)
            for _ in range(epoch):
                torch.randperm(self.num_samples, generator=self.generator)


# ---------------------------------------------------------------------------------------- trainer state
def _to_device(value: Any, device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_device(v, device) for v in value)
    return value


class ResumeMixin:
    """Trainer hooks: weights loaded with key conversion, the state TRL and we keep outside the engine saved with
    the RNG state and restored with it, the epoch-reproducible sampler, and ``resume_from_checkpoint`` resolved
    (incomplete checkpoints skipped, none found is a user error)."""

    def _state_file(self, directory: str | Path) -> Path:
        name = (
            STATE_FILE
            if self.args.world_size <= 1
            else STATE_FILE.replace(".pt", f"_{self.args.process_index}.pt")
        )
        return Path(directory) / name

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        checkpoint = resolve_resume(
            resume_from_checkpoint, self.args.output_dir, not self.args.save_only_model
        )
        return super().train(checkpoint, *args, **kwargs)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        if (
            self.is_deepspeed_enabled
            or self.is_fsdp_enabled
            or not load_model_weights(target, resume_from_checkpoint)
        ):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _get_train_sampler(self, dataset=None):
        sampler = super()._get_train_sampler(dataset)
        if type(sampler) is RepeatSampler:
            sampler.__class__ = EpochRepeatSampler
        return sampler

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        state = {
            "step": self._step,
            "buffered_inputs": self._buffered_inputs,
            "ktr_generator": self._ktr_generator.get_state(),
        }
        torch.save(state, self._state_file(output_dir))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        super()._load_rng_state(checkpoint)
        if checkpoint is None:
            return
        path = self._state_file(checkpoint)
        if not path.is_file():
            raise UserError(
                f"{checkpoint} has no {path.name} (saved by another trainer or world size); the run cannot resume "
                "exactly from it: start a fresh run or resume with the same number of processes"
            )
        state = torch.load(
            path, map_location="cpu", weights_only=False
        )  # our own file, written beside optimizer.pt
        self._step = state["step"]
        self._buffered_inputs = _to_device(state["buffered_inputs"], self.accelerator.device)
        self._ktr_generator.set_state(state["ktr_generator"])
        self._truncate_selection_log()

    def _truncate_selection_log(self) -> None:
        """Drop the ``selection.jsonl`` records of steps after the checkpoint (written before the run was killed,
        generated again now), so the resumed log holds each step once."""
        import json

        from videoktr.training.selection import SELECTION_FILE

        path = Path(self.args.output_dir) / SELECTION_FILE
        if not self.accelerator.is_main_process or not path.is_file():
            return
        step = self.state.global_step
        lines = path.read_text().splitlines(keepends=True)
        kept = []
        for line in lines:
            if not line.strip():
                continue
            try:
                if json.loads(line).get("step", -1) < step:
                    kept.append(line)
            except ValueError:  # a line cut off when the run was killed
                logger.warning("%s: dropping a cut-off line", path)
        if len(kept) != len(lines):
            path.write_text("".join(kept))


# ------------------------------------------------------------------------------------- stages of the demo
_RUN_SETTINGS, _RUN_FINISHED = "run_settings.json", "run_finished.json"


def _same(path: Path, settings: dict) -> bool:
    try:
        return json.loads(path.read_text()).get("settings") == json.loads(json.dumps(settings))
    except (OSError, ValueError):
        return False


def prepare_run_dir(run_dir: Path, settings: dict) -> tuple[dict | None, bool | None]:
    """For a training stage writing into ``run_dir`` with ``settings`` (JSON-able): ``(finished, resume)``.

    ``finished`` is the record of a run with these settings that ended (skip it); else ``resume`` is True when a
    run with these settings was interrupted after a complete checkpoint. Otherwise the folder's checkpoints and
    selection log (of other settings, or of a run killed before its first checkpoint) are removed, so a fresh run
    never mixes with them."""
    import shutil

    finished = run_dir / _RUN_FINISHED
    if finished.is_file() and _same(finished, settings):
        return json.loads(finished.read_text()), None
    started = run_dir / _RUN_SETTINGS
    if started.is_file() and _same(started, settings):
        try:
            resolve_resume(True, run_dir)
            return None, True
        except UserError:
            pass  # killed before its first complete checkpoint: start over
    for stale in [*run_dir.glob("checkpoint-*"), run_dir / "selection.jsonl", finished]:
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    started.write_text(json.dumps({"settings": settings}, indent=1))
    return None, None


def finish_run_dir(run_dir: Path, settings: dict, **record: Any) -> None:
    """Mark the stage in ``run_dir`` finished with ``settings`` and ``record`` (global_step, stopped_early...)."""
    (run_dir / _RUN_FINISHED).write_text(json.dumps({"settings": settings, **record}, indent=1))


def finished_run(run_dir: Path, record: dict):
    """What the demo reads of a trainer, for a finished run loaded from ``run_dir``: ``state.global_step``,
    ``state.log_history``, ``processing_class`` and ``args.output_dir``."""
    from types import SimpleNamespace

    from transformers import AutoProcessor

    state = SimpleNamespace(
        global_step=record["global_step"], log_history=json.loads((run_dir / "log_history.json").read_text())
    )
    return SimpleNamespace(
        state=state,
        processing_class=AutoProcessor.from_pretrained(run_dir),
        args=SimpleNamespace(output_dir=str(run_dir)),
    )
