"""Recipes: one YAML file per experiment, grouped by concern, with ``key=value`` overrides from the command line.

```yaml
base: other.yaml                # optional: read that recipe first, then deep-merge this one over it
model: runs/demo/sft            # a local checkpoint directory (from_pretrained)
data: {train: data/train.json, root: data, eval: data/val.json}   # eval: optional (TRL's evaluation loop);
#                                 allow_outside_root: true accepts media outside the root
rewards: [accuracy, format]     # names in videoktr.rewards or dotted paths
lora: null                      # or any peft.LoraConfig fields: {r: 16, lora_alpha: 32, target_modules: [q_proj]}
freeze_vision: false
resume_from_checkpoint: null    # a checkpoint dir, or true for the newest in output_dir
trainer: {method: ktr, ...}     # KTRConfig fields (TRL GRPOConfig + Video-KTR options)
```
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videoktr.errors import UserError

TOP_LEVEL = (
    "model",
    "data",
    "rewards",
    "lora",
    "freeze_vision",
    "resume_from_checkpoint",
    "trainer",
    "sft",
    "eval",
)


@dataclass
class Recipe:
    """A training run: model, data, rewards, adapters and the ``KTRConfig`` fields."""

    model: str = field(metadata={"help": "Local checkpoint directory (config + weights + processor)."})
    data: dict = field(
        metadata={
            "help": "{train: FILE.json|jsonl, root: DIR the record paths are relative to, eval: optional FILE "
            "evaluated by TRL's evaluation loop during training (needs trainer.eval_strategy: steps|epoch)}."
        }
    )
    rewards: list = field(
        default_factory=lambda: ["accuracy", "format"], metadata={"help": "Reward functions."}
    )
    lora: dict | None = field(
        default=None,
        metadata={
            "help": "peft.LoraConfig fields (r, lora_alpha, lora_dropout, target_modules, use_rslora, ...; "
            "'alpha' / 'dropout' are accepted for lora_alpha / lora_dropout), or null for full fine-tuning."
        },
    )
    freeze_vision: bool = field(default=False, metadata={"help": "Freeze the vision tower (no gradient)."})
    resume_from_checkpoint: Any = field(
        default=None, metadata={"help": "Checkpoint dir, or true for the newest."}
    )
    trainer: dict = field(default_factory=dict, metadata={"help": "KTRConfig fields."})
    sft: dict | None = field(default=None, metadata={"help": "Optional SFT warm start options (demo)."})
    eval: dict | None = field(default=None, metadata={"help": "Optional evaluation options (demo)."})


def _yaml_load(text: str):
    """``yaml.safe_load``, except that ``1e-5`` is a float (PyYAML's YAML 1.1 needs ``1.0e-5``, else a string)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    exponent = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", exponent, list("-+0123456789"))
    return yaml.load(text, Loader=Loader)  # a SafeLoader: no arbitrary objects


def _yaml_error(err, where: str) -> UserError:
    """A YAML syntax / constructor error as a message naming ``where`` and the line."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or str(err)
    note = " (only plain YAML is read: no !!python tags)" if "constructor" in problem else ""
    return UserError(f"{where}{line}: not valid YAML: {problem}{note}")


def read_yaml(path: str | Path):
    """A YAML file's content (safe loader, ``1e-5`` a float); syntax and tag errors name the file and line."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        return _yaml_load(path.read_text())
    except yaml.YAMLError as err:
        raise _yaml_error(err, str(path)) from None


def parse_value(text: str):
    """``key=value`` values are YAML scalars/lists: 0.2, 1e-5, true, null, [a, b]."""
    import yaml

    try:
        return _yaml_load(text)
    except yaml.YAMLError as err:
        raise _yaml_error(err, f"value {text!r}") from None


def _accepts(value: Any, tp: Any) -> bool:
    """Whether ``value`` (parsed YAML) fits the annotation ``tp``; types it cannot judge are accepted."""
    import enum
    import types
    import typing

    origin = typing.get_origin(tp)
    if tp is Any or tp is None:
        return True
    if tp is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(value, arg) for arg in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return isinstance(value, tp) or value in [member.value for member in tp]
    if tp in (list, tuple) or origin in (list, tuple):  # "a,b" too: the configs split comma-separated strings
        return isinstance(value, list | tuple | str)
    if tp is dict or origin is dict:
        return isinstance(value, dict)
    return True


def _describe(tp: Any) -> str:
    import enum
    import types
    import typing

    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(arg) for arg in typing.get_args(tp)))
    if typing.get_origin(tp) is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(str(member.value) for member in tp)
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    names.update({list: "a list", dict: "a mapping"})
    return names.get(tp, names.get(typing.get_origin(tp), getattr(tp, "__name__", str(tp))))


def check_field_types(cls: type, values: dict, where: str) -> None:
    """Refuse a value that does not fit its dataclass field (``use_cpu=maybe``, ``max_steps=abc``) or its
    ``choices`` metadata, naming ``where + field``; unknown fields are left to the caller."""
    import typing

    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in fields:
            continue
        tp = hints.get(key)
        if not _accepts(value, tp):
            raise UserError(f"{where}{key}={value!r}: expected {_describe(tp)}")
        choices = fields[key].metadata.get("choices")
        if choices and value is not None and value not in choices:
            raise UserError(f"{where}{key}={value!r}: expected one of {', '.join(map(str, choices))}")


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set dotted keys: ``trainer.method=grpo``, ``lora.r=8``. A bare KTRConfig field name goes to ``trainer``."""
    raw = json.loads(json.dumps(raw))  # deep copy of plain data
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not key=value (e.g. trainer.method=grpo)")
        key, value = item.split("=", 1)
        parts = key.split(".")
        if parts[0] not in TOP_LEVEL:
            parts = ["trainer", *parts]
        node = raw
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise UserError(f"override {item!r}: {part!r} is not a mapping in the recipe")
            node = node[part]
        try:
            node[parts[-1]] = parse_value(value)
        except UserError as err:
            raise UserError(f"override {item!r}: {err}") from None
    return raw


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def _read_with_base(path: Path, seen: tuple = ()) -> dict:
    """A recipe YAML; ``base: other.yaml`` (relative to this file) is read first and deep-merged under it."""
    if path in seen:
        raise UserError(f"recipe {path}: 'base' chain loops ({' -> '.join(map(str, seen))})")
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise UserError(
            f"recipe {path}: expected a mapping of {', '.join(TOP_LEVEL)}, got {type(raw).__name__}"
        )
    base = raw.pop("base", None)
    if base is None:
        return raw
    base_path = (path.parent / base).resolve()
    if not base_path.is_file():
        raise UserError(f"recipe {path}: base {base} not found (looked for {base_path})")
    return _merge(_read_with_base(base_path, (*seen, path)), raw)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recipe {path} does not exist")
    raw = _read_with_base(path)
    unknown = set(raw) - set(TOP_LEVEL)
    if unknown:
        raise UserError(f"{path}: unknown top-level keys {sorted(unknown)}; valid: {', '.join(TOP_LEVEL)}")
    raw = apply_overrides(raw, overrides or [])
    for key in ("model", "data"):
        if key not in raw:
            raise UserError(f"{path}: missing '{key}' ({Recipe.__dataclass_fields__[key].metadata['help']})")
    check_field_types(Recipe, raw, f"{path}: ")
    if raw.get("lora"):
        lora_config(raw["lora"], where=f"{path}: ")  # refused before any model loads
    return Recipe(**raw)


def make_config(trainer: dict):
    """``KTRConfig`` from a dict; unknown fields and invalid values become errors that say what to change."""
    from videoktr.training.config import KTRConfig

    names = {f.name for f in dataclasses.fields(KTRConfig)}
    unknown = sorted(set(trainer) - names)
    if unknown:
        raise UserError(f"trainer: unknown KTRConfig fields {unknown} (see `videoktr train --list-fields`)")
    check_field_types(KTRConfig, trainer, "trainer.")
    try:
        return KTRConfig(**trainer)
    except ValueError as err:
        raise UserError(f"trainer: {err}") from err


def load_model(
    path: str, freeze_vision: bool = False, lora: dict | None = None, init_kwargs: dict | None = None
):
    """Model + processor from a local directory; optional frozen vision tower and PEFT LoRA config.

    ``init_kwargs`` (the trainer's ``model_init_kwargs``: dtype, attn_implementation, ...) load the policy exactly as
    TRL loads the reference model from them (``trl.trainer.utils.create_model_from_path``), so both match.
    """
    from videoktr.models.tiny import load_model_and_processor

    if init_kwargs:
        from transformers import AutoProcessor
        from trl.trainer.utils import create_model_from_path

        if not (Path(path) / "config.json").is_file():
            load_model_and_processor(path)  # raises the UserError that says what to do
        model = create_model_from_path(str(path), **{"trust_remote_code": False, **init_kwargs})
        processor = AutoProcessor.from_pretrained(path)
    else:
        model, processor = load_model_and_processor(path)
    if freeze_vision:
        for p in model.model.visual.parameters():
            p.requires_grad_(False)
    peft_config = lora_config(lora) if lora else None
    return model, processor, peft_config


# videoktr's defaults where the recipe says nothing; every other field is peft.LoraConfig's own default
LORA_DEFAULTS = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "task_type": "CAUSAL_LM",
}
LORA_ALIASES = {"alpha": "lora_alpha", "dropout": "lora_dropout"}


def lora_config(lora: dict, where: str = ""):
    """``peft.LoraConfig`` from the recipe's ``lora:`` mapping: any LoraConfig field (``alpha`` / ``dropout`` are
    aliases of ``lora_alpha`` / ``lora_dropout``); unknown keys, mistyped and invalid values are refused with the
    fix, prefixed by ``where``."""
    from peft import LoraConfig

    if not isinstance(lora, dict):
        raise UserError(f"{where}lora: expected a mapping of peft.LoraConfig fields, got {lora!r}")
    valid = sorted(f.name for f in dataclasses.fields(LoraConfig) if f.init)
    unknown = sorted(key for key in lora if LORA_ALIASES.get(key, key) not in valid)
    if unknown:
        raise UserError(
            f"{where}unknown lora keys {unknown}; valid (peft.LoraConfig fields; alpha, dropout = "
            f"lora_alpha, lora_dropout): {', '.join(valid)}"
        )
    kwargs, given_as = {}, {}
    for key, value in lora.items():
        name = LORA_ALIASES.get(key, key)
        if name in kwargs:
            first, second = sorted([given_as[name], key], key=len)
            raise UserError(f"{where}lora: {first!r} and {second!r} both given (the same field); keep one")
        kwargs[name], given_as[name] = value, key
    check_field_types(
        LoraConfig, {given_as[k]: v for k, v in kwargs.items() if given_as[k] == k}, f"{where}lora."
    )
    for alias, name in LORA_ALIASES.items():
        if alias in lora:
            check_field_types(LoraConfig, {name: lora[alias]}, f"{where}lora.{alias} ({name}): ")
    try:
        return LoraConfig(**{**LORA_DEFAULTS, **kwargs})
    except (TypeError, ValueError) as err:
        raise UserError(f"{where}lora: {err}") from err


DATA_KEYS = ("train", "root", "allow_outside_root", "eval")


def check_training_data(recipe: Recipe, kind: str = "rl", split: str = "train") -> tuple[list[dict], str]:
    """(records, root) of ``recipe.data[split]`` (``train`` or ``eval``) after the shared record check (:func:`videoktr.data.schema.check_records`)
    of every record: fields, answers vs options, duplicate ids, paths under the root. Raises :class:`UserError`
    listing every problem; runs before any model loads."""
    from videoktr.data.schema import check_records, load_records, require_valid

    data = recipe.data if isinstance(recipe.data, dict) else {}
    unknown = sorted(set(data) - set(DATA_KEYS))
    if "train" not in data or unknown:
        raise UserError(
            f"recipe data: {data!r}: needs 'train' (and optionally {', '.join(DATA_KEYS[1:])})"
            + (f"; unknown keys {unknown}" if unknown else "")
        )
    allow = data.get("allow_outside_root", False)
    if not isinstance(allow, bool):
        raise UserError(f"data.allow_outside_root={allow!r} must be true or false")
    records = load_records(data[split])
    root = str(data.get("root", Path(data["train"]).parent))
    # existence and decoding are checked when the rows are prepared (an undecodable video is skipped and counted)
    report = check_records(
        records, root, path=data[split], kind=kind, exists=False, decode=False, allow_outside_root=allow
    )
    require_valid(report, "training data" if split == "train" else f"{split} data")
    return records, root


def build_trainer(recipe: Recipe, config=None, model=None, processor=None):
    """Everything but ``train()``: data checked, model loaded, ``KTRTrainer`` constructed."""
    from videoktr.training.data import prepare_rl_rows, to_dataset
    from videoktr.training.trainer import KTRTrainer

    config = config or make_config(recipe.trainer)
    records, root = check_training_data(recipe)
    _check_eval_schedule(recipe.data, config)
    prepared = prepare_rl_rows(records, root, config.video_sampling(), config.prompt_template)
    eval_dataset = None
    if recipe.data.get("eval") is not None:
        eval_records, _ = check_training_data(recipe, split="eval")
        prepared_eval = prepare_rl_rows(eval_records, root, config.video_sampling(), config.prompt_template)
        eval_dataset = to_dataset(prepared_eval.rows)
    peft_config = None
    if model is None:
        model, processor, peft_config = load_model(
            recipe.model, recipe.freeze_vision, recipe.lora, init_kwargs=config.model_init_kwargs
        )
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    if config.process_index == 0:  # one writer when several processes run the same recipe
        prepared.write_skipped(Path(config.output_dir) / "skipped_videos.jsonl")
        if eval_dataset is not None:
            prepared_eval.write_skipped(Path(config.output_dir) / "skipped_eval_videos.jsonl")
    trainer = KTRTrainer(
        model=model,
        reward_funcs=list(recipe.rewards),
        args=config,
        processing_class=processor,
        train_dataset=to_dataset(prepared.rows),
        eval_dataset=eval_dataset,
        peft_config=peft_config,
    )
    trainer.skipped_videos = prepared.skipped
    if prepared.skipped:
        trainer._metrics["train"]["data/skipped_videos"].append(float(len(prepared.skipped)))
    return trainer


def _check_eval_schedule(data: dict, config) -> None:
    """An eval file goes with an evaluation schedule, and a schedule with an eval file."""
    strategy = str(getattr(config.eval_strategy, "value", config.eval_strategy))
    if data.get("eval") is not None and strategy == "no":
        raise UserError(
            "data.eval is set but trainer.eval_strategy is 'no': set trainer.eval_strategy: steps (with "
            "trainer.eval_steps) or epoch so TRL evaluates it, or remove data.eval"
        )
    if data.get("eval") is None and strategy != "no":
        raise UserError(
            f"trainer.eval_strategy is {strategy!r} but the recipe has no data.eval file to evaluate; add "
            "data.eval: FILE or set trainer.eval_strategy: 'no'"
        )


def save_run_files(recipe: Recipe, output_dir: str | Path) -> None:
    """The recipe (with overrides applied) next to the outputs, so one command reruns the experiment."""
    import yaml

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.yaml").write_text(yaml.safe_dump(dataclasses.asdict(recipe), sort_keys=False))
