import dataclasses
from pathlib import Path

import yaml

from videoktr.frames.config import VoyagerConfig
from videoktr.frames.demo import FramesDemoConfig

CONFIGS = Path(__file__).parents[2] / "configs"


def test_demo_yaml_mirrors_the_defaults():
    raw = yaml.safe_load((CONFIGS / "frames_demo.yaml").read_text())
    voyager = raw.pop("voyager")
    defaults = dataclasses.asdict(FramesDemoConfig())
    defaults.pop("voyager")
    assert raw == defaults
    cfg = dataclasses.asdict(VoyagerConfig())
    cfg.pop("seed"), cfg.pop("label_batch_size")
    assert voyager == cfg


def test_gpu_recipe_is_a_valid_voyager_config():
    raw = yaml.safe_load((CONFIGS / "paper" / "frame_voyager_qwen2_5_vl_7b.yaml").read_text())
    cfg = VoyagerConfig(**raw)
    assert (cfg.candidates, cfg.frames) == (32, 8)
