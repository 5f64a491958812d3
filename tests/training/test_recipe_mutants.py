"""Recipes, pinned where mutation testing (docs/testing.md, module training/setup) found nothing checking them:
YAML errors with file and line, the field type checks and their wording, overrides and base merging, the LoRA
mapping, the data mapping and the eval schedule, the saved recipe and the model loading options."""

from __future__ import annotations

import dataclasses
import enum
import json
import typing
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import pytest
import torch
import yaml

from videoktr.errors import UserError
from videoktr.training import recipe as R
from videoktr.training.recipe import Recipe


def message(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as err:
        fn(*args, **kwargs)
    return str(err.value)


# ------------------------------------------------------------------------------------------------- YAML
def test_yaml_numbers_and_safe_loading():
    # 1e-5 / 1E-8 / -2e3 / +3e1 / 1_0e2 / 1.5e-3 are floats (PyYAML alone reads the first five as strings);
    # a bare word starting with e stays a string
    text = "a: 1e-5\nb: 1E-8\nc: -2e3\nd: +3e1\ne: 1_0e2\nf: 1.5e-3\ng: e5\nh: 12\n"
    assert R._yaml_load(text) == {
        "a": 1e-5, "b": 1e-8, "c": -2000.0, "d": 30.0, "e": 1000.0, "f": 1.5e-3, "g": "e5", "h": 12,
    }  # fmt: skip
    assert type(R._yaml_load("x: 1e5")["x"]) is float


def test_yaml_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: m\ndata: {train: t.json\ntrainer: {}\n")  # the mapping on line 2 is never closed
    text = message(R.read_yaml, bad)
    assert text.startswith(f"{bad}:3: not valid YAML: ") and "(only plain YAML" not in text
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("model: m\nx: !!python/object:os.system ls\n")
    assert message(R.read_yaml, tagged) == (
        f"{tagged}:2: not valid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object:os.system' (only plain YAML is read: no !!python tags)"
    )
    assert message(R.read_yaml, tmp_path / "none.yaml") == f"{tmp_path / 'none.yaml'} does not exist"
    good = tmp_path / "good.yaml"
    good.write_text("a: [1, 2]\n")
    assert R.read_yaml(str(good)) == {"a": [1, 2]}


def test_yaml_error_without_a_problem_mark_uses_the_context_mark():
    mark = yaml.Mark("x", 0, 4, 0, None, None)  # line index 4 -> line 5
    err = yaml.MarkedYAMLError(context="while parsing", context_mark=mark, problem="bad thing")
    assert str(R._yaml_error(err, "f.yaml")) == "f.yaml:5: not valid YAML: bad thing"
    assert str(R._yaml_error(yaml.YAMLError("plain"), "f.yaml")) == "f.yaml: not valid YAML: plain"


def test_parse_value_errors_say_which_value():
    assert R.parse_value("[a, b]") == ["a", "b"] and R.parse_value("null") is None
    assert message(R.parse_value, "[a, b") == (
        "value '[a, b':1: not valid YAML: expected ',' or ']', but got '<stream end>'"
    )


# ------------------------------------------------------------------------------------------ field types
class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@pytest.mark.parametrize(
    "value, tp, ok",
    [
        (object(), Any, True),
        (3, None, True),
        (None, type(None), True),
        (0, type(None), False),
        (None, int | None, True),
        ("x", int | None, False),
        (2, typing.Optional[int], True),  # noqa: UP045 (typing.Union, not X | Y)
        ("a", Literal["a", "b"], True),
        ("c", Literal["a", "b"], False),
        (True, bool, True),
        (1, bool, False),
        (1, int, True),
        (True, int, False),
        (1.5, int, False),
        (2, float, True),
        (2.5, float, True),
        (False, float, False),
        ("2", float, False),
        ("s", str, True),
        (1, str, False),
        (Color.RED, Color, True),
        ("blue", Color, True),
        ("green", Color, False),
        ([1], list, True),
        ((1,), tuple, True),
        ("a,b", list[str], True),  # comma-separated strings are split by the configs
        (3, list[str], False),
        ({}, dict, True),
        ({"a": 1}, dict[str, int], True),
        ([], dict, False),
        ("anything", Path, True),  # a type it cannot judge is accepted
    ],
)
def test_accepts(value, tp, ok):
    assert R._accepts(value, tp) is ok


@pytest.mark.parametrize(
    "tp, text",
    [
        (int | None, "an integer or null"),
        (typing.Union[int, float, None], "an integer or a number or null"),  # noqa: UP007
        (list[str] | str | None, "a list or a string or null"),
        (Literal["none", "all"], "'none' or 'all'"),
        (Color, "one of red, blue"),
        (bool, "true/false"),
        (int, "an integer"),
        (float, "a number"),
        (str, "a string"),
        (type(None), "null"),
        (list, "a list"),
        (dict, "a mapping"),
        (dict[str, int], "a mapping"),
        (Path, "Path"),
        ("weird", "weird"),  # no __name__: the annotation as written
    ],
)
def test_describe(tp, text):
    assert R._describe(tp) == text


@dataclasses.dataclass
class Options:
    count: int = 1
    mode: str = dataclasses.field(default="a", metadata={"choices": ["a", "b"]})
    note: str | None = dataclasses.field(default=None, metadata={"choices": ["x"]})


def test_check_field_types_names_the_field_and_what_it_expects():
    R.check_field_types(Options, {"count": 3, "mode": "b", "note": None, "unknown": object()}, "w.")
    assert message(R.check_field_types, Options, {"count": "3"}, "w.") == "w.count='3': expected an integer"
    assert message(R.check_field_types, Options, {"mode": "c"}, "w.") == "w.mode='c': expected one of a, b"
    assert message(R.check_field_types, Options, {"note": "y"}, "") == "note='y': expected one of x"


# ------------------------------------------------------------------------------------- overrides and base
def test_override_with_a_bad_yaml_value_names_the_override():
    assert message(R.apply_overrides, {"trainer": {}}, ["ktr_signals=[visual"]) == (
        "override 'ktr_signals=[visual': value '[visual':1: not valid YAML: expected ',' or ']', but got "
        "'<stream end>'"
    )


def test_override_into_an_existing_and_a_new_nested_mapping():
    raw = {"trainer": {"a": 1}, "eval": None}
    out = R.apply_overrides(raw, ["sft.x.y=2", "eval.limit=3", "trainer.b=[1]", "c=d=e"])
    assert out == {"trainer": {"a": 1, "b": [1], "c": "d=e"}, "eval": {"limit": 3}, "sft": {"x": {"y": 2}}}
    assert raw == {"trainer": {"a": 1}, "eval": None}


def test_merge_is_deep_and_the_top_wins():
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "b": 1, "c": {"k": 1}, "d": 5}
    top = {"a": {"y": {"q": 3}}, "b": {"new": 1}, "c": 7}
    assert R._merge(base, top) == {"a": {"x": 1, "y": {"p": 1, "q": 3}}, "b": {"new": 1}, "c": 7, "d": 5}
    assert base["a"]["y"] == {"p": 1, "q": 2}  # the base is not modified


def test_base_chains_are_read_relative_to_each_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "root.yaml").write_text("model: m\ndata: {train: t.json}\ntrainer: {seed: 1, beta: 0.1}\n")
    (tmp_path / "sub" / "mid.yaml").write_text("base: ../root.yaml\ntrainer: {seed: 2}\n")
    (tmp_path / "sub" / "top.yaml").write_text("base: mid.yaml\nrewards: [format]\n")
    recipe = R.load_recipe(tmp_path / "sub" / "top.yaml")
    assert (recipe.model, recipe.rewards, recipe.trainer) == ("m", ["format"], {"seed": 2, "beta": 0.1})


def test_base_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nmodel: m\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    a, b = tmp_path / "a.yaml", (tmp_path / "b.yaml").resolve()
    assert message(R.load_recipe, a) == f"recipe {a.resolve()}: 'base' chain loops ({a} -> {b})"
    (tmp_path / "c.yaml").write_text("base: gone.yaml\n")
    assert message(R.load_recipe, tmp_path / "c.yaml") == (
        f"recipe {tmp_path / 'c.yaml'}: base gone.yaml not found (looked for {(tmp_path / 'gone.yaml').resolve()})"
    )
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    assert message(R.load_recipe, tmp_path / "list.yaml") == (
        f"recipe {tmp_path / 'list.yaml'}: expected a mapping of model, data, rewards, lora, freeze_vision, "
        "resume_from_checkpoint, trainer, sft, eval, got list"
    )
    (tmp_path / "empty.yaml").write_text("")
    assert message(R.load_recipe, tmp_path / "empty.yaml") == (
        f"{tmp_path / 'empty.yaml'}: missing 'model' (Local checkpoint directory (config + weights + processor).)"
    )


def test_load_recipe_checks_types_and_lora_before_any_model_loads(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: m\ndata: {train: t.json}\n")
    assert message(R.load_recipe, path, ["freeze_vision=maybe"]) == (
        f"{path}: freeze_vision='maybe': expected true/false"
    )
    assert message(R.load_recipe, path, ["lora.rank=4"]).startswith(f"{path}: unknown lora keys ['rank']; ")
    recipe = R.load_recipe(path, ["lora.r=4"])
    assert recipe.lora == {"r": 4} and recipe.trainer == {} and recipe.resume_from_checkpoint is None
    assert message(R.load_recipe, path, ["data=null"]).startswith(f"{path}: data=None: expected a mapping")


def test_make_config_messages(tmp_path):
    assert message(R.make_config, {"lerning_rate": 1, "zz": 2}) == (
        "trainer: unknown KTRConfig fields ['lerning_rate', 'zz'] (see `videoktr train --list-fields`)"
    )
    assert message(R.make_config, {"max_steps": "abc"}) == "trainer.max_steps='abc': expected an integer"


# ---------------------------------------------------------------------------------------------------- LoRA
def test_lora_defaults_are_videoktrs():
    config = R.lora_config({})
    assert (config.r, config.lora_alpha, config.lora_dropout, config.task_type) == (16, 32, 0.05, "CAUSAL_LM")
    assert config.target_modules == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert R.lora_config({"r": 4, "dropout": 0.1}).lora_dropout == 0.1


def test_lora_messages_name_the_key_and_the_prefix():
    assert message(R.lora_config, {"r": "x"}, where="f.yaml: ") == "f.yaml: lora.r='x': expected an integer"
    assert (
        message(R.lora_config, {"alpha": "x"})
        == "lora.alpha (lora_alpha): lora_alpha='x': expected an integer"
    )
    assert message(R.lora_config, {"dropout": "x"}) == (
        "lora.dropout (lora_dropout): lora_dropout='x': expected a number"
    )
    assert message(R.lora_config, {"lora_dropout": 0.1, "dropout": 0.2}, where="w: ") == (
        "w: lora: 'dropout' and 'lora_dropout' both given (the same field); keep one"
    )
    assert (
        message(R.lora_config, [1], where="w: ")
        == "w: lora: expected a mapping of peft.LoraConfig fields, got [1]"
    )
    text = message(R.lora_config, {"rank": 4, "alpha": 2, "zeta": 1}, where="w: ")
    assert text.startswith(
        "w: unknown lora keys ['rank', 'zeta']; valid (peft.LoraConfig fields; alpha, dropout = lora_alpha, "
        "lora_dropout): alora_invocation_tokens, "
    )
    assert message(R.lora_config, {"layers_pattern": "x"}, where="w: ").startswith(
        "w: lora: When `layers_pattern`"
    )


# ---------------------------------------------------------------------------------- data and eval schedule
def test_training_data_mapping(synthetic_data, tmp_path):
    train = str(synthetic_data["train"])
    records, root = R.check_training_data(Recipe(model="m", data={"train": train}))
    assert root == str(synthetic_data["train"].parent) and [r["problem_id"] for r in records] == [
        "train-0000", "train-0001",
    ]  # fmt: skip
    _, root = R.check_training_data(Recipe(model="m", data={"train": train, "root": str(tmp_path)}))
    assert root == str(tmp_path)
    records, _ = R.check_training_data(
        Recipe(model="m", data={"train": train, "eval": str(synthetic_data["test"])}), split="eval"
    )
    assert [r["problem_id"] for r in records] == ["test-0000"]
    assert message(R.check_training_data, Recipe(model="m", data={"root": "r", "x": 1})) == (
        "recipe data: {'root': 'r', 'x': 1}: needs 'train' (and optionally root, allow_outside_root, eval); "
        "unknown keys ['x']"
    )
    assert message(R.check_training_data, Recipe(model="m", data=["t.json"])) == (
        "recipe data: {}: needs 'train' (and optionally root, allow_outside_root, eval)"
    )
    assert message(
        R.check_training_data, Recipe(model="m", data={"train": train, "allow_outside_root": "yes"})
    ) == ("data.allow_outside_root='yes' must be true or false")


def test_training_data_problems_name_the_split(synthetic_data, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"problem_id": "x", "path": "/elsewhere/v.mp4"}]))
    data = {"train": str(synthetic_data["train"]), "root": str(synthetic_data["root"]), "eval": str(bad)}
    text = message(R.check_training_data, Recipe(model="m", data=data), split="eval")
    assert text.startswith(f"{bad}: ") and "problem(s) in the eval data, nothing was trained" in text
    text = message(R.check_training_data, Recipe(model="m", data={**data, "train": str(bad)}))
    assert "problem(s) in the training data, nothing was trained" in text
    # paths outside the root are the check's to refuse unless allowed
    outside = tmp_path / "outside.json"
    record = json.loads(synthetic_data["train"].read_text())[0]
    outside.write_text(json.dumps([{**record, "path": str(tmp_path / "v.mp4")}]))
    data = {"train": str(outside), "root": str(synthetic_data["root"])}
    assert "outside the data root" in message(R.check_training_data, Recipe(model="m", data=data))
    records, _ = R.check_training_data(Recipe(model="m", data={**data, "allow_outside_root": True}))
    assert records[0]["path"] == str(tmp_path / "v.mp4")


class Strategy(enum.Enum):
    NO = "no"
    STEPS = "steps"


@pytest.mark.parametrize("strategy", ["no", Strategy.NO])
def test_eval_schedule_needs_an_eval_file_and_back(strategy):
    steps = "steps" if isinstance(strategy, str) else Strategy.STEPS
    R._check_eval_schedule({"train": "t"}, SimpleNamespace(eval_strategy=strategy))
    R._check_eval_schedule({"eval": "e"}, SimpleNamespace(eval_strategy=steps))
    assert message(R._check_eval_schedule, {"eval": "e"}, SimpleNamespace(eval_strategy=strategy)) == (
        "data.eval is set but trainer.eval_strategy is 'no': set trainer.eval_strategy: steps (with "
        "trainer.eval_steps) or epoch so TRL evaluates it, or remove data.eval"
    )
    assert message(R._check_eval_schedule, {"eval": None}, SimpleNamespace(eval_strategy=steps)) == (
        "trainer.eval_strategy is 'steps' but the recipe has no data.eval file to evaluate; add data.eval: FILE "
        "or set trainer.eval_strategy: 'no'"
    )


def test_saved_recipe_keeps_the_field_order_and_creates_the_folder(tmp_path):
    recipe = Recipe(model="m", data={"train": "t.json"}, trainer={"seed": 3})
    R.save_run_files(recipe, tmp_path / "a" / "b")
    R.save_run_files(recipe, tmp_path / "a" / "b")  # a second save (resume) overwrites
    text = (tmp_path / "a" / "b" / "recipe.yaml").read_text()
    assert [line.split(":")[0] for line in text.splitlines() if line[0].isalpha()] == [
        "model", "data", "rewards", "lora", "freeze_vision", "resume_from_checkpoint", "trainer", "sft", "eval",
    ]  # fmt: skip
    assert yaml.safe_load(text) == dataclasses.asdict(recipe)


# ------------------------------------------------------------------------------------------------- models
def test_load_model_options(tiny_model_dir, tmp_path):
    model, processor, peft = R.load_model(str(tiny_model_dir))
    assert peft is None and processor is not None
    assert all(p.requires_grad for p in model.parameters())
    frozen, _, peft = R.load_model(str(tiny_model_dir), freeze_vision=True, lora={"r": 2})
    assert peft.r == 2
    visual = {id(p) for p in frozen.model.visual.parameters()}
    assert visual and all(not p.requires_grad for p in frozen.model.visual.parameters())
    assert all(p.requires_grad for p in frozen.parameters() if id(p) not in visual)
    # model_init_kwargs load through TRL's create_model_from_path, as TRL loads the reference model
    loaded, processor, _ = R.load_model(str(tiny_model_dir), init_kwargs={"dtype": "bfloat16"})
    assert next(loaded.parameters()).dtype == torch.bfloat16 and processor is not None
    assert message(R.load_model, str(tmp_path), init_kwargs={"dtype": "float32"}).startswith(
        f"{tmp_path} is not a model directory (no config.json)"
    )


def test_build_trainer_with_an_eval_file_writes_both_skip_logs(make_trainer, synthetic_data, tmp_path):
    records = json.loads(synthetic_data["train"].read_text())
    evals = tmp_path / "eval.json"
    evals.write_text(
        json.dumps([records[0], {**records[1], "problem_id": "gone", "path": "videos/gone.mp4"}])
    )
    data = {"train": str(synthetic_data["train"]), "root": str(synthetic_data["root"]), "eval": str(evals)}
    trainer = make_trainer(data=data, eval_strategy="steps", eval_steps=1, per_device_eval_batch_size=2)
    assert [row["problem_id"] for row in trainer.eval_dataset] == ["train-0000"]
    out = Path(trainer.args.output_dir)
    assert [
        json.loads(line)["problem_id"]
        for line in (out / "skipped_eval_videos.jsonl").read_text().splitlines()
    ] == ["gone"]
    assert (out / "skipped_videos.jsonl").read_text() == ""  # every training video is usable
    assert trainer.skipped_videos == [] and "data/skipped_videos" not in trainer._metrics["train"]
    assert trainer.reward_funcs and trainer.args.eval_strategy == "steps"


def test_every_known_field_is_checked_after_an_unknown_one():
    # unknown keys are the caller's to report, and must not stop the check of the fields after them
    assert (
        message(R.check_field_types, Options, {"unknown": 1, "count": "x"}, "")
        == "count='x': expected an integer"
    )


def test_sft_data_is_checked_as_sft(synthetic_data):
    # kind="sft" asks for the reasoning an SFT record trains on; RL records have none
    data = {"train": str(synthetic_data["train"]), "root": str(synthetic_data["root"])}
    text = message(R.check_training_data, Recipe(model="m", data=data), kind="sft")
    assert "process: an SFT record needs non-empty reasoning '<think>...</think>'" in text
    sft = {**data, "train": str(synthetic_data["train_sft"])}
    assert len(R.check_training_data(Recipe(model="m", data=sft), kind="sft")[0]) == 2


def test_model_init_kwargs_load_once_as_trl_loads_the_reference(tiny_model_dir, monkeypatch):
    import trl.trainer.utils

    import videoktr.models.tiny

    created, plain_loads = [], []
    original_create, original_load = (
        trl.trainer.utils.create_model_from_path,
        videoktr.models.tiny.load_model_and_processor,
    )
    monkeypatch.setattr(
        trl.trainer.utils,
        "create_model_from_path",
        lambda p, **kw: created.append((p, kw)) or original_create(p, **kw),
    )
    monkeypatch.setattr(
        videoktr.models.tiny, "load_model_and_processor", lambda p: plain_loads.append(p) or original_load(p)
    )
    R.load_model(str(tiny_model_dir), init_kwargs={"dtype": "float32"})
    R.load_model(str(tiny_model_dir), init_kwargs={"dtype": "float32", "trust_remote_code": True})
    # trust_remote_code=False unless the recipe says otherwise (TRL's create_model_from_path default for the
    # reference model); the checkpoint is loaded once, not first by the plain loader too
    assert created == [
        (str(tiny_model_dir), {"trust_remote_code": False, "dtype": "float32"}),
        (str(tiny_model_dir), {"trust_remote_code": True, "dtype": "float32"}),
    ]
    assert plain_loads == []


def test_build_trainer_honours_the_model_options(make_trainer, tmp_path):
    # model_init_kwargs, freeze_vision and a nested output_dir that does not exist yet
    out = tmp_path / "a" / "b"
    frozen = make_trainer(
        recipe={"freeze_vision": True}, output_dir=str(out), model_init_kwargs={"dtype": "bfloat16"}
    )
    assert (out / "skipped_videos.jsonl").is_file()
    visual = frozen.model.model.visual
    assert all(not p.requires_grad for p in visual.parameters())
    assert all(p.requires_grad for n, p in frozen.model.named_parameters() if ".visual." not in f".{n}")
    assert next(frozen.model.parameters()).dtype == torch.bfloat16
    lora = make_trainer(recipe={"lora": {"r": 2, "target_modules": ["q_proj"]}})
    assert lora.model.peft_config["default"].r == 2


def test_build_trainer_with_a_given_model(tiny_model_dir, synthetic_data, tmp_path):
    from videoktr.models.tiny import load_model_and_processor

    def reward(completions, **kwargs):
        return [0.0] * len(completions)

    model, processor = load_model_and_processor(tiny_model_dir)
    trainer_fields = dict(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", num_generations=2,
        per_device_train_batch_size=2, max_completion_length=8, video_frames=4, video_max_pixels=56 * 112,
        prompt_template="short", length_bonus=False, accuracy_reward="reward",
    )  # fmt: skip
    recipe = Recipe(
        model="unused", data={"train": str(synthetic_data["train"]), "root": str(synthetic_data["root"])},
        rewards=[reward], trainer=trainer_fields,
    )  # fmt: skip
    trainer = R.build_trainer(recipe, model=model, processor=processor)
    assert trainer.model is model and not hasattr(trainer.model, "peft_config")


def test_sampling_decides_which_videos_are_usable(make_trainer, synthetic_data, tmp_path):
    # 8-frame videos cannot give 10 frames: every training video is skipped, and so is every eval video
    with pytest.raises(UserError, match=r"^no usable record: all 2 were skipped"):
        make_trainer(video_frames=10)
    records = json.loads(synthetic_data["train"].read_text())
    chosen = tmp_path / "chosen.json"  # explicit frames are checked against the video, not the sampling
    chosen.write_text(json.dumps([{**r, "frame_indices": [0, 1]} for r in records]))
    data = {"train": str(chosen), "root": str(synthetic_data["root"]), "eval": str(synthetic_data["train"])}
    with pytest.raises(UserError, match=r"^no usable record: all 2 were skipped"):
        make_trainer(
            data=data, video_frames=10, eval_strategy="steps", eval_steps=1, per_device_eval_batch_size=2
        )
