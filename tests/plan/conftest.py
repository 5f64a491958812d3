"""A saved tiny Qwen2.5-VL (random weights) for the plan tests: its config.json is what `plan` reads."""

from __future__ import annotations

import pytest

from videoktr.models.tiny import build_tiny_model, load_model_and_processor


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("plan_tiny"))


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    return load_model_and_processor(tiny_dir)
