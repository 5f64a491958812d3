"""Model sizes for ``videoktr plan`` without loading weights: the config of a local checkpoint (``config.json``) or,
for a hub name that cannot be downloaded here, a small table of published configs; parameters are counted on a
model built on the ``meta`` device (no memory, exact counts for every family transformers knows).

Sources of :data:`KNOWN_CONFIGS`: the ``config.json`` of each model on the Hugging Face hub (``Qwen/<name>``), the
fields that set sizes copied as published. ``Video-R1-SFT-7B`` (the Video-R1 SFT checkpoint the paper starts from)
is Qwen2.5-VL-7B-Instruct fine-tuned, with the same config. ``tiny`` is :class:`videoktr.models.tiny.TinyModelConfig`'s
defaults (what ``videoktr build-tiny-model`` writes, vocabulary at its target size).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from videoktr.errors import UserError

__all__ = ["KNOWN_CONFIGS", "ModelSizes", "model_sizes", "resolve_config"]

_QWEN25_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "spatial_merge_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
}


def _qwen25(hidden, layers, heads, kv, inter, vocab, tie):
    return {
        "model_type": "qwen2_5_vl",
        "text_config": {
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv,
            "intermediate_size": inter,
            "vocab_size": vocab,
            "max_position_embeddings": 128000,
            "tie_word_embeddings": tie,
        },
        "vision_config": {**_QWEN25_VISION, "out_hidden_size": hidden},
        "tie_word_embeddings": tie,
    }


# name (matched case-insensitively against the recipe's model, or its last path component) -> config dict
KNOWN_CONFIGS: dict[str, dict] = {
    "Qwen2.5-VL-3B-Instruct": _qwen25(2048, 36, 16, 2, 11008, 151936, True),
    "Qwen2.5-VL-7B-Instruct": _qwen25(3584, 28, 28, 4, 18944, 152064, False),
    "Qwen2.5-VL-32B-Instruct": _qwen25(5120, 64, 40, 8, 27648, 152064, False),
    "Qwen2.5-VL-72B-Instruct": _qwen25(8192, 80, 64, 8, 29568, 152064, False),
    "Qwen2-VL-7B-Instruct": {
        "model_type": "qwen2_vl",
        "text_config": {
            "hidden_size": 3584,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "intermediate_size": 18944,
            "vocab_size": 152064,
            "max_position_embeddings": 32768,
        },
        "vision_config": {
            "depth": 32,
            "embed_dim": 1280,
            "hidden_size": 3584,
            "mlp_ratio": 4,
            "num_heads": 16,
            "patch_size": 14,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
        },
        "tie_word_embeddings": False,
    },
    "Qwen3-VL-8B-Instruct": {
        "model_type": "qwen3_vl",
        "text_config": {
            "hidden_size": 4096,
            "num_hidden_layers": 36,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "intermediate_size": 12288,
            "vocab_size": 151936,
            "max_position_embeddings": 262144,
            "tie_word_embeddings": False,
        },
        "vision_config": {
            "depth": 27,
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_heads": 16,
            "out_hidden_size": 4096,
            "patch_size": 16,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [8, 16, 24],
        },
        "tie_word_embeddings": False,
    },
}
ALIASES = {
    "video-r1-sft-7b": "Qwen2.5-VL-7B-Instruct",
    "qwen2.5-vl-7b-cot-sft": "Qwen2.5-VL-7B-Instruct",  # Video-R1/Qwen2.5-VL-7B-COT-SFT
}


def _tiny_config() -> dict:
    from videoktr.models.tiny import TinyModelConfig

    c = TinyModelConfig()
    return {
        "model_type": "qwen2_5_vl",
        "text_config": {
            "hidden_size": c.hidden_size,
            "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads,
            "num_key_value_heads": c.num_key_value_heads,
            "intermediate_size": c.intermediate_size,
            "vocab_size": c.vocab_size,
            "max_position_embeddings": c.max_position_embeddings,
            "tie_word_embeddings": c.tie_word_embeddings,
            "bos_token_id": None,  # the real ids (151643...) are outside the tiny vocabulary
            "eos_token_id": None,
        },
        "vision_config": {
            "depth": c.vision_depth,
            "hidden_size": c.vision_hidden_size,
            "intermediate_size": c.vision_intermediate_size,
            "num_heads": c.vision_num_heads,
            "patch_size": c.patch_size,
            "temporal_patch_size": c.temporal_patch_size,
            "spatial_merge_size": c.spatial_merge_size,
            "window_size": c.window_size,
            "fullatt_block_indexes": [0],
            "out_hidden_size": c.hidden_size,
        },
        "tie_word_embeddings": c.tie_word_embeddings,
    }


def known_names() -> list[str]:
    return [*KNOWN_CONFIGS, *ALIASES, "tiny"]


def resolve_config(model: str) -> tuple[dict, str]:
    """(config dict, where it came from) of ``model``: a local directory with ``config.json``, else a known name
    (the whole string or its last path component, case-insensitive). Refuses an unknown one with the list."""
    path = Path(model)
    if (path / "config.json").is_file():
        return json.loads((path / "config.json").read_text()), f"{path / 'config.json'}"
    lookup = {name.lower(): name for name in KNOWN_CONFIGS}
    for key in (model.lower(), path.name.lower()):
        if key in lookup:
            return KNOWN_CONFIGS[
                lookup[key]
            ], f"published config of Qwen/{lookup[key]} (table in plan/models.py)"
        if key in ALIASES:
            name = ALIASES[key]
            return KNOWN_CONFIGS[name], f"published config of Qwen/{name} ({path.name} is a fine-tune of it)"
        if key == "tiny":
            return _tiny_config(), "videoktr.models.tiny.TinyModelConfig defaults (build-tiny-model)"
    raise UserError(
        f"model {model!r}: no config.json there and not a known name; pass --model with a local checkpoint "
        f"directory or one of: {', '.join(known_names())}"
    )


@dataclass(frozen=True)
class ModelSizes:
    """Parameter counts and the dimensions the memory estimate needs (text decoder and vision tower)."""

    family: str
    params: int  # all parameters (tied embeddings once)
    vision_params: int
    hidden: int
    layers: int
    heads: int
    kv_dim: int  # key/value heads * head dim
    intermediate: int
    vocab: int
    max_positions: int
    vision_hidden: int
    vision_layers: int
    vision_intermediate: int
    vision_heads: int
    patch: int
    temporal_patch: int
    merge: int
    lora_per_rank: dict  # target module name -> sum of (in + out) features of the linears it names

    def lora_params(self, r: int, targets: list[str]) -> int:
        """Trainable parameters of a LoRA of rank ``r`` on ``targets`` (r * (in + out) per adapted linear)."""
        return r * sum(self.lora_per_rank.get(t, 0) for t in targets)


def _config_object(config: dict):
    from transformers import AutoConfig

    config = dict(config)
    model_type = config.pop("model_type", None)
    if model_type is None:
        raise UserError("the model config has no model_type")
    try:
        return AutoConfig.for_model(model_type, **config)
    except (KeyError, ValueError) as err:
        raise UserError(f"model type {model_type!r} is not known to transformers: {err}") from None


@lru_cache(maxsize=16)
def _sizes_cached(config_json: str) -> ModelSizes:
    import torch
    from transformers import AutoModelForImageTextToText

    from videoktr.models.families import family_of

    cfg = _config_object(json.loads(config_json))
    family = family_of(cfg).name
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(cfg)
    seen, total, vision = set(), 0, 0
    for name, p in model.named_parameters(remove_duplicate=True):
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if ".visual." in f".{name}":
            vision += p.numel()
    lora: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):  # peft matches the name's suffix anywhere (vision MLPs too)
            key = name.rsplit(".", 1)[-1]
            lora[key] = lora.get(key, 0) + module.in_features + module.out_features
    text, vis = getattr(cfg, "text_config", cfg), cfg.vision_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    vision_hidden = getattr(vis, "embed_dim", None) or vis.hidden_size
    vision_inter = getattr(vis, "intermediate_size", None) or int(
        vision_hidden * getattr(vis, "mlp_ratio", 4)
    )
    return ModelSizes(
        family=family,
        params=total,
        vision_params=vision,
        hidden=text.hidden_size,
        layers=text.num_hidden_layers,
        heads=text.num_attention_heads,
        kv_dim=text.num_key_value_heads * head_dim,
        intermediate=text.intermediate_size,
        vocab=text.vocab_size,
        max_positions=text.max_position_embeddings,
        vision_hidden=vision_hidden,
        vision_layers=vis.depth,
        vision_intermediate=vision_inter,
        vision_heads=vis.num_heads,
        patch=vis.patch_size,
        temporal_patch=vis.temporal_patch_size,
        merge=vis.spatial_merge_size,
        lora_per_rank=lora,
    )


def model_sizes(config: dict) -> ModelSizes:
    """:class:`ModelSizes` of a config dict (``config.json`` content or a :data:`KNOWN_CONFIGS` entry)."""
    keep = {k: v for k, v in config.items() if not k.startswith("_") and k not in ("architectures",)}
    return _sizes_cached(json.dumps(keep, sort_keys=True))
