"""Recipes: YAML + key=value overrides -> Recipe -> KTRConfig; build_trainer records skipped videos."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from videoktr.errors import UserError
from videoktr.training.recipe import Recipe, apply_overrides, load_recipe, make_config, save_run_files

RAW = {
    "model": "runs/tiny",
    "data": {"train": "data/train.json", "root": "data"},
    "rewards": ["accuracy", "format"],
    "lora": None,
    "trainer": {"method": "ktr", "learning_rate": 1e-6, "ktr_signals": ["visual", "temporal", "entropy"]},
}


def test_overrides_set_dotted_and_bare_keys_with_yaml_values():
    out = apply_overrides(
        RAW,
        [
            "trainer.method=grpo",
            "ktr_visual_fraction=0.5",  # a bare KTRConfig field goes to trainer
            "ktr_signals=[visual, entropy]",
            "learning_rate=1e-5",
            "lora.r=8",  # lora is null: the mapping is created
            "freeze_vision=true",
            "data.root=/abs/data",
            "trainer.beta=null",
            "model=runs/other=1",  # only the first '=' splits
        ],
    )
    assert out["trainer"] == {
        "method": "grpo",
        "learning_rate": 1e-5,
        "ktr_signals": ["visual", "entropy"],
        "ktr_visual_fraction": 0.5,
        "beta": None,
    }
    assert out["lora"] == {"r": 8} and out["freeze_vision"] is True
    assert out["data"] == {"train": "data/train.json", "root": "/abs/data"}
    assert out["model"] == "runs/other=1"
    assert RAW["trainer"]["method"] == "ktr" and RAW["lora"] is None  # the input is not modified


@pytest.mark.parametrize(
    "override, message",
    [
        ("method", r"override 'method' is not key=value \(e.g. trainer.method=grpo\)"),
        ("model.path=x", r"override 'model.path=x': 'model' is not a mapping"),
    ],
)
def test_bad_overrides_say_what_is_wrong(override, message):
    with pytest.raises(UserError, match=message):
        apply_overrides(RAW, [override])


def test_load_recipe_applies_overrides_and_builds_the_config(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(RAW))
    recipe = load_recipe(path, ["method=entropy", f"trainer.output_dir={tmp_path / 'out'}", "use_cpu=true"])
    assert isinstance(recipe, Recipe) and recipe.rewards == ["accuracy", "format"]
    cfg = make_config(recipe.trainer)
    assert cfg.method == "entropy" and cfg.learning_rate == 1e-6 and cfg.output_dir == str(tmp_path / "out")


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    # PyYAML (YAML 1.1) reads `1e-5` as a string; a recipe or an override must get the number.
    path = tmp_path / "recipe.yaml"
    path.write_text("model: m\ndata: {train: t.json}\ntrainer: {learning_rate: 1e-5, adam_epsilon: 1E-8}\n")
    recipe = load_recipe(path, ["weight_decay=2e-2"])
    assert recipe.trainer == {"learning_rate": 1e-5, "adam_epsilon": 1e-8, "weight_decay": 0.02}
    assert make_config({**recipe.trainer, "output_dir": str(tmp_path), "use_cpu": True}).learning_rate == 1e-5


def test_base_recipe_is_deep_merged_under(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(RAW))
    (tmp_path / "child.yaml").write_text("base: base.yaml\ntrainer: {method: grpo}\n")
    recipe = load_recipe(tmp_path / "child.yaml")
    assert recipe.trainer == {**RAW["trainer"], "method": "grpo"} and recipe.model == RAW["model"]


def test_saved_recipe_reruns_the_same_experiment(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(RAW))
    recipe = load_recipe(path, ["method=grpo"])
    save_run_files(recipe, tmp_path / "out")
    again = load_recipe(tmp_path / "out" / "recipe.yaml")
    assert dataclasses.asdict(again) == dataclasses.asdict(recipe)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({**RAW, "optimiser": {}}, r"unknown top-level keys \['optimiser'\]; valid: model, data"),
        ({k: v for k, v in RAW.items() if k != "model"}, r"missing 'model' \(Local checkpoint directory"),
        ({k: v for k, v in RAW.items() if k != "data"}, r"missing 'data'"),
    ],
)
def test_bad_recipes_are_refused(tmp_path, raw, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match=message):
        load_recipe(path)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_build_trainer_skips_and_records_undecodable_videos(make_trainer, synthetic_data, tmp_path):
    records = json.loads(synthetic_data["train"].read_text())
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    missing = {**records[0], "problem_id": "missing-1", "path": "videos/does-not-exist.mp4"}
    garbage = {**records[1], "problem_id": "garbage-1", "path": str(broken)}
    train = tmp_path / "train.json"
    train.write_text(json.dumps([missing, records[0], garbage, records[1]]))

    data = {"train": str(train), "root": str(synthetic_data["root"])}
    with pytest.raises(UserError, match=r"#2 \(id garbage-1\): path: .*outside the data root"):
        make_trainer(data=data)  # broken.mp4 is not under the root
    trainer = make_trainer(data={**data, "allow_outside_root": True})

    skipped = trainer.skipped_videos
    assert [s["problem_id"] for s in skipped] == ["missing-1", "garbage-1"]
    assert skipped[0]["path"] == str(synthetic_data["root"] / "videos" / "does-not-exist.mp4")
    assert skipped[1]["path"] == str(broken)
    assert all(s["reason"] for s in skipped)
    log = Path(trainer.args.output_dir) / "skipped_videos.jsonl"
    assert [json.loads(line) for line in log.read_text().splitlines()] == skipped
    # never substituted: the dataset holds exactly the two decodable records, in order
    assert [row["problem_id"] for row in trainer.train_dataset] == [
        records[0]["problem_id"],
        records[1]["problem_id"],
    ]
    assert trainer._metrics["train"]["data/skipped_videos"] == [2.0]


# frame_voyager_*.yaml are VoyagerConfig files for `videoktr frames`, checked in tests/frames/test_config.py
@pytest.mark.parametrize(
    "path",
    sorted(
        p
        for p in (Path(__file__).parents[2] / "configs" / "paper").glob("*.yaml")
        if not p.name.startswith("frame_voyager_")
    ),
)
def test_paper_recipes_are_valid_configs(path, tmp_path):
    recipe = load_recipe(path, [f"trainer.output_dir={tmp_path}", "use_cpu=true"])
    config = make_config(recipe.trainer)
    raw = yaml.safe_load(path.read_text())
    if path.name != "qwen2_5_vl_7b_ktr.yaml" and raw.get("base") != "qwen2_5_vl_7b_ktr.yaml":
        return  # another paper's own run (e.g. TW-GRPO's authors' settings): only checked to be valid
    assert config.top_p == 0.95  # the authors' / Video-R1 rollout sampling
    sampling = config.video_sampling()  # the authors' frame rule
    assert (sampling.num_frames, sampling.fps, sampling.min_frames, sampling.max_frames) == (None, 2.0, 4, 16)
    assert sampling.min_pixels == sampling.max_pixels == 128 * 28 * 28
    assert config.model_init_kwargs["dtype"] == "bfloat16"
