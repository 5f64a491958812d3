"""Model families: what is model-specific, one registered :class:`ModelFamily` per architecture.

A family is picked from a checkpoint's ``config.model_type`` (:func:`family_of`); an unknown type, or a processor
without a video processor, is refused with the supported list. Each family runs on transformers' own classes and
processors (``AutoModelForImageTextToText`` / ``AutoProcessor``) and says:

- how video inputs are built (``second_per_grid_ts``: Qwen2-VL / Qwen2.5-VL place frames in time with temporal
  M-RoPE ids from the real sampling fps; Qwen3-VL / Qwen3.5 write each temporal patch's timestamp in the text,
  ``<1.5 seconds><|vision_start|>...``, from the real frame indices and fps);
- what its vision pass returns (``deepstack``: Qwen3-VL also injects intermediate vision features into the first
  LM layers; those travel with the main features, see :class:`videoktr.models.forwards.QwenVLForwards`);
- whether the feature-level counterfactuals are exact (``feature_shuffle_exact``) and why (``notes``).

Exactness (each checked by tests/models/test_families.py on the family's tiny model): every family's vision tower
attends within one temporal patch (``get_vision_cu_seqlens`` without ``merge_temporal``) and adds no temporal
position to the patches, so the features of a temporal patch depend only on its own frames. Permuting whole
temporal-patch blocks of the features (and, for Qwen3-VL, of every DeepStack feature map in the same way) therefore
equals encoding the frame-permuted video, whose timestamps / temporal positions stay those of the original order
(the same metadata). The visual ``zero`` counterfactual zeroes the DeepStack maps too (else vision leaks in).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from videoktr.core.registry import Registry
from videoktr.errors import UserError

__all__ = ["FAMILIES", "ModelFamily", "family_of", "check_video_processor", "supported"]


@dataclass(frozen=True)
class ModelFamily:
    """What differs between video LLM architectures (see the module docstring)."""

    name: str  # the --arch name and the config.model_type
    label: str
    base_model_class: str  # transformers class of the backbone (holds .visual and the LM)
    second_per_grid_ts: bool  # temporal M-RoPE from the sampling fps (else timestamps in the text)
    deepstack: bool  # the vision pass returns DeepStack feature maps that enter the LM
    feature_shuffle_exact: bool = True
    notes: str = ""
    tiny_overrides: dict = field(default_factory=dict)  # TinyModelConfig fields of its tiny model


FAMILIES: Registry = Registry("model family")
FAMILIES.add(
    "qwen2_5_vl",
    ModelFamily(
        "qwen2_5_vl",
        "Qwen2.5-VL",
        "Qwen2_5_VLModel",
        second_per_grid_ts=True,
        deepstack=False,
        notes="temporal M-RoPE ids from second_per_grid_ts; vision tower: window attention within a temporal patch",
    ),
)
FAMILIES.add(
    "qwen2_vl",
    ModelFamily(
        "qwen2_vl",
        "Qwen2-VL",
        "Qwen2VLModel",
        second_per_grid_ts=False,
        deepstack=False,
        notes="temporal M-RoPE ids count temporal patches (no fps): the processor's frames are its only clock",
    ),
)
FAMILIES.add(
    "qwen3_vl",
    ModelFamily(
        "qwen3_vl",
        "Qwen3-VL",
        "Qwen3VLModel",
        second_per_grid_ts=False,
        deepstack=True,
        notes="per-patch timestamps in the text (unchanged by a shuffle, as when re-encoding permuted frames); "
        "DeepStack maps permuted / zeroed with the main features",
        tiny_overrides={
            "patch_size": 16,
            "min_pixels": 64 * 64,
            "max_pixels": 128 * 128,
            "vision_depth": 2,
        },
    ),
)
FAMILIES.add(
    "qwen3_5",
    ModelFamily(
        "qwen3_5",
        "Qwen3.5",
        "Qwen3_5Model",
        second_per_grid_ts=False,
        deepstack=False,
        notes="per-patch timestamps in the text; hybrid LM (Gated DeltaNet + attention layers)",
        tiny_overrides={"patch_size": 16, "min_pixels": 64 * 64, "max_pixels": 128 * 128},
    ),
)


def supported() -> str:
    return ", ".join(f"{name} ({FAMILIES.get(name).label})" for name in FAMILIES.names())


def family_of(config) -> ModelFamily:
    """The family of a model config (``config.model_type``); refuses an unsupported one with the list."""
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES.names():
        raise UserError(
            f"model type {model_type!r} has no videoktr adapter; supported families: {supported()}"
        )
    return FAMILIES.get(model_type)


def check_video_processor(processor, where: str = "the model") -> None:
    """Refuse a processor without a video processor (text-only or image-only checkpoints)."""
    if getattr(processor, "video_processor", None) is None:
        raise UserError(
            f"{where}: the processor ({type(processor).__name__}) has no video processor; videoktr needs a video "
            f"LLM checkpoint of a supported family: {supported()}"
        )
