"""Model sizes from a config without weights: exact against a real model, and the published configs' totals."""

from __future__ import annotations

import pytest

from videoktr.errors import UserError
from videoktr.plan.models import KNOWN_CONFIGS, model_sizes, resolve_config


def test_sizes_of_a_local_checkpoint_equal_the_loaded_model(tiny_dir, tiny):
    model, _ = tiny
    config, source = resolve_config(str(tiny_dir))
    sizes = model_sizes(config)
    assert source.endswith("config.json")
    assert sizes.params == sum(p.numel() for p in model.parameters())  # tied embeddings counted once
    assert sizes.vision_params == sum(p.numel() for p in model.model.visual.parameters())
    assert sizes.max_positions == model.config.text_config.max_position_embeddings


def test_lora_parameter_count_equals_peft(tiny_dir):
    from peft import LoraConfig, get_peft_model

    from videoktr.models.tiny import load_model_and_processor

    model, _ = load_model_and_processor(tiny_dir)
    targets = ["q_proj", "v_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=targets))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert model_sizes(resolve_config(str(tiny_dir))[0]).lora_params(4, targets) == trainable


@pytest.mark.parametrize(
    "name, billions",  # the totals the model cards state (hub "Model size" of each safetensors checkpoint)
    [("Qwen2.5-VL-3B-Instruct", 3.75), ("Qwen2.5-VL-7B-Instruct", 8.29), ("Qwen2.5-VL-32B-Instruct", 33.5),
     ("Qwen2.5-VL-72B-Instruct", 73.4), ("Qwen2-VL-7B-Instruct", 8.29), ("Qwen3-VL-8B-Instruct", 8.77)],
)  # fmt: skip
def test_known_configs_give_the_published_sizes(name, billions):
    sizes = model_sizes(KNOWN_CONFIGS[name])
    assert sizes.params / 1e9 == pytest.approx(billions, rel=0.005)


def test_names_resolve_by_last_path_component_and_aliases():
    assert resolve_config("checkpoints/qwen2.5-vl-7b-instruct")[0] is KNOWN_CONFIGS["Qwen2.5-VL-7B-Instruct"]
    config, source = resolve_config("checkpoints/Video-R1-SFT-7B")
    assert config is KNOWN_CONFIGS["Qwen2.5-VL-7B-Instruct"] and "fine-tune" in source
    with pytest.raises(UserError, match="not a known name.*Qwen2.5-VL-7B-Instruct"):
        resolve_config("checkpoints/my-model")
