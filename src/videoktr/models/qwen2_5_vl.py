"""Qwen2.5-VL adapter: inputs through the real processor, one shared vision pass, attribution passes.

Shapes: N rows (B prompts x G completions, contiguous), P prompt length (left padded), T completion length,
V vocabulary, D the LM hidden size. Video ``v`` has ``t, h, w = video_grid_thw[v]`` (vision patches) and features
``(t * h * w / merge**2, D)``: ``t`` temporal patches of ``h * w / merge**2`` rows.

Why one vision pass is enough: Qwen2.5-VL's vision tower attends only within a temporal patch, and
``Qwen2_5_VLModel.forward`` accepts precomputed features (``mm_encoder_outputs``) while it still derives M-RoPE
positions from ``input_ids``, ``mm_token_type_ids``, ``video_grid_thw`` and ``second_per_grid_ts``. So the full,
zeroed and shuffled passes share the features of one vision pass and keep the original video's positions.

Traps this module guards against (measured on transformers 5.23):
- raw frames without metadata are assumed to be 24 fps, which collapses temporal positions: the real sampling fps is
  always passed and ``second_per_grid_ts`` is checked against it;
- without ``mm_token_type_ids`` the model silently uses 1-D positions: it is required wherever video is present.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from videoktr.core.attribution import distribution_shift, entropy_from_logits, selective_log_softmax
from videoktr.core.perturbations import TEMPORAL_PERTURBATIONS, VISUAL_PERTURBATIONS
from videoktr.models.batching import (
    IMAGE_TYPE,
    MULTIMODAL_KEYS,
    SEQUENCE_KEYS,
    VIDEO_TYPE,
    concat_multimodal,
    split_multimodal,
    visuals_per_row,
)
from videoktr.models.inputs import build_video_inputs, reencode_with_frame_permutation

__all__ = [
    "MULTIMODAL_KEYS",
    "SEQUENCE_KEYS",
    "VIDEO_TYPE",
    "IMAGE_TYPE",
    "find_vl_model",
    "build_video_inputs",
    "split_multimodal",
    "concat_multimodal",
    "visuals_per_row",
    "encode_videos",
    "encode_images",
    "VisionCallCounter",
    "forward_with_video_features",
    "vision_token_mask",
    "completion_logps",
    "perturb_features",
    "perturbed_logps",
    "attribution_passes",
    "reencode_with_frame_permutation",
]


def find_vl_model(model: torch.nn.Module) -> torch.nn.Module:
    """The backbone (``Qwen2_5_VLModel``, ``Qwen3VLModel``, ... of a supported family) inside ``model`` (a
    ForConditionalGeneration, a PEFT wrapper, or itself)."""
    from videoktr.models.families import FAMILIES, supported

    classes = {FAMILIES.get(name).base_model_class for name in FAMILIES.names()}
    for module in model.modules():
        if type(module).__name__ in classes:
            return module
    raise TypeError(f"no video LLM backbone inside {type(model).__name__}; supported families: {supported()}")


def encoder_outputs(features: Sequence[torch.Tensor], hidden_size: int, deepstack: bool):
    """``mm_encoder_outputs`` entry from per-video features; with ``deepstack`` each tensor holds the main features
    and the DeepStack maps side by side on the last dimension (see :func:`encode_videos`)."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    if not deepstack:
        return BaseModelOutputWithPooling(pooler_output=tuple(features))
    from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

    n_maps = features[0].shape[-1] // hidden_size - 1
    parts = [torch.split(f, hidden_size, dim=-1) for f in features]
    return BaseModelOutputWithDeepstackFeatures(
        pooler_output=tuple(p[0] for p in parts),
        deepstack_features=[tuple(p[1 + k] for p in parts) for k in range(n_maps)],
    )


# ------------------------------------------------------------------------------------------- vision pass


def _split_rows(pixels: torch.Tensor, grid_thw: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.split(pixels, grid_thw.prod(-1).tolist()))


def encode_videos(
    model: torch.nn.Module,
    pixel_values_videos: torch.Tensor,
    video_grid_thw: torch.Tensor,
    dedupe: bool = True,
    deepstack: bool = False,
) -> tuple[torch.Tensor, ...]:
    """One vision-tower call for the batch's videos; returns per-video features ``(t*h*w/merge**2, D)``.

    With ``deepstack`` and a model that returns DeepStack maps (Qwen3-VL), each video's tensor is
    ``(t*h*w/merge**2, D * (1 + n_maps))``: main features then each map, side by side (rows stay tokens, so
    temporal-patch blocks are permuted / zeroed together; :func:`encoder_outputs` splits them).

    With ``dedupe``, videos with identical grid and pixels (the G copies of one prompt) are encoded once and the
    same tensor is returned for each copy: gradients from every copy accumulate into the one encoding.
    pixel_values_videos: (sum_v t*h*w, C*tps*p*p); video_grid_thw: (n_videos, 3).
    """
    vl = find_vl_model(model)
    videos = _split_rows(pixel_values_videos, video_grid_thw)
    unique: list[int] = []  # index of the first occurrence of each distinct video
    owner: list[int] = []  # video -> position in `unique`
    for v, pixels in enumerate(videos):
        match = None
        if dedupe:
            for k, u in enumerate(unique):
                if torch.equal(video_grid_thw[u], video_grid_thw[v]) and torch.equal(videos[u], pixels):
                    match = k
                    break
        if match is None:
            unique.append(v)
            match = len(unique) - 1
        owner.append(match)
    out = vl.get_video_features(
        torch.cat([videos[u] for u in unique]), video_grid_thw[unique], return_dict=True
    )
    feats = out.pooler_output
    maps = getattr(out, "deepstack_features", None)
    if deepstack and maps:
        feats = [torch.cat([feats[k], *(m[k] for m in maps)], dim=-1) for k in range(len(unique))]
    return tuple(feats[k] for k in owner)


def encode_images(model: torch.nn.Module, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor):
    """Per-image features ``(h*w/merge**2, D)`` from one vision-tower call. pixel_values: (sum h*w, C*tps*p*p)."""
    vl = find_vl_model(model)
    return tuple(vl.get_image_features(pixel_values, image_grid_thw, return_dict=True).pooler_output)


class VisionCallCounter:
    """Context manager counting calls of the vision tower (a forward hook on ``Qwen2_5_VLModel.visual``).

    with VisionCallCounter(model) as counter: ...; counter.count
    """

    def __init__(self, model: torch.nn.Module):
        self.visual = find_vl_model(model).visual
        self.count = 0
        self._handle = None

    def _hook(self, module, args, output) -> None:
        self.count += 1

    def __enter__(self) -> VisionCallCounter:
        self._handle = self.visual.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


# ------------------------------------------------------------------------------------------- LM passes


def _mm_encoder_outputs(model, inputs, video_features, image_features) -> dict[str, Any]:
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    outputs = {}
    if inputs.get("video_grid_thw") is not None:
        if video_features is None:
            raise ValueError("the inputs hold videos: pass their video_features (see encode_videos)")
        outputs["video"] = BaseModelOutputWithPooling(pooler_output=tuple(video_features))
    elif video_features:
        raise ValueError("video_features given but the inputs hold no video (video_grid_thw is None)")
    if inputs.get("pixel_values") is not None:
        if image_features is None:
            image_features = encode_images(model, inputs["pixel_values"], inputs["image_grid_thw"])
        outputs["image"] = BaseModelOutputWithPooling(pooler_output=tuple(image_features))
    return outputs


def _require_token_types(inputs) -> None:
    has_visual = inputs.get("video_grid_thw") is not None or inputs.get("image_grid_thw") is not None
    if has_visual and inputs.get("mm_token_type_ids") is None:
        raise ValueError(
            "mm_token_type_ids is required with video/image inputs (else positions are silently 1-D)"
        )


def forward_with_video_features(
    model: torch.nn.Module,
    inputs,
    video_features: Sequence[torch.Tensor] | None,
    image_features: Sequence[torch.Tensor] | None = None,
    **kwargs,
) -> torch.Tensor:
    """Model forward with precomputed vision features instead of pixels; returns logits (N, L or keep, V).

    inputs: input_ids, attention_mask, mm_token_type_ids, video_grid_thw, second_per_grid_ts (+ image keys);
    pixel values in ``inputs`` are ignored. Images without ``image_features`` are encoded here. ``kwargs`` go to
    the model (e.g. ``logits_to_keep``, ``position_ids``, ``use_cache``).
    """
    _require_token_types(inputs)
    model_kwargs = {k: v for k, v in inputs.items() if k not in ("pixel_values_videos", "pixel_values")}
    model_kwargs["mm_encoder_outputs"] = _mm_encoder_outputs(model, inputs, video_features, image_features)
    return model(**model_kwargs, **kwargs).logits


def vision_token_mask(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """(N, L) bool: positions of video and image placeholder tokens (ids read from the model config)."""
    config = find_vl_model(model).config
    return (input_ids == config.video_token_id) | (input_ids == config.image_token_id)


def _with_completion(inputs, completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> dict[str, Any]:
    """Prompt + completion inputs: ids and masks concatenated, mm_token_type_ids extended with text (0)."""
    full = dict(inputs)
    full["input_ids"] = torch.cat([inputs["input_ids"], completion_ids], dim=1)
    full["attention_mask"] = torch.cat(
        [inputs["attention_mask"], completion_mask.to(inputs["attention_mask"])], 1
    )
    if inputs.get("mm_token_type_ids") is not None:
        zeros = torch.zeros_like(completion_ids, dtype=inputs["mm_token_type_ids"].dtype)
        full["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], zeros], dim=1)
    return full


def _positions(model, full) -> torch.Tensor:
    """M-RoPE position ids (3, N, P+T) of the unperturbed inputs (kept when attention is masked)."""
    position_ids, _ = find_vl_model(model).get_rope_index(
        full["input_ids"],
        mm_token_type_ids=full["mm_token_type_ids"],
        image_grid_thw=full.get("image_grid_thw"),
        video_grid_thw=full.get("video_grid_thw"),
        second_per_grid_ts=full.get("second_per_grid_ts"),
        attention_mask=full["attention_mask"],
    )
    return position_ids


def completion_logps(
    model: torch.nn.Module,
    inputs,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    video_features: Sequence[torch.Tensor] | None = None,
    image_features: Sequence[torch.Tensor] | None = None,
    attention_override: torch.Tensor | None = None,
    temperature: float = 1.0,
    with_entropy: bool = False,
    with_logits: bool = False,
) -> dict[str, torch.Tensor]:
    """Teacher-forced pass over prompt + completion; log-probs of the completion tokens.

    inputs: prompt inputs (input_ids (N, P), ...); completion_ids, completion_mask: (N, T).
    video_features: per-video features (skip the vision tower) or None (the model encodes the pixels).
    attention_override: (N, P) prompt attention mask to use instead (positions stay those of the original mask).
    Returns logp (N, T) under ``softmax(logits / temperature)``; on request entropy (N, T) of the same
    distribution and logits (N, T, V), unscaled (position t holds the logits that predict completion token t).
    """
    full = _with_completion(inputs, completion_ids, completion_mask)
    kwargs: dict[str, Any] = {"logits_to_keep": completion_ids.shape[1] + 1, "use_cache": False}
    if attention_override is not None:
        _require_token_types(full)
        kwargs["position_ids"] = _positions(model, full)
        override = torch.cat([attention_override, completion_mask.to(attention_override.dtype)], dim=1)
        full["attention_mask"] = override.to(full["attention_mask"].dtype)
    if video_features is None and image_features is None:
        _require_token_types(full)
        logits = model(**full, **kwargs).logits
    else:
        logits = forward_with_video_features(model, full, video_features, image_features, **kwargs)
    logits = logits[:, :-1, :]
    out = {"logp": selective_log_softmax(logits, completion_ids, temperature=temperature)}
    if with_entropy:
        out["entropy"] = entropy_from_logits(logits, temperature=temperature)
    if with_logits:
        out["logits"] = logits
    return out


# ----------------------------------------------------------------------------------------- perturbations


def _row_ranges(inputs, token_type: int) -> list[range]:
    counts = visuals_per_row(inputs["mm_token_type_ids"], token_type).tolist()
    bounds = torch.tensor([0] + counts).cumsum(0).tolist()
    return [range(bounds[r], bounds[r + 1]) for r in range(len(counts))]


def _merge_size(model: torch.nn.Module) -> int:
    return int(find_vl_model(model).config.vision_config.spatial_merge_size)


def perturb_features(
    model: torch.nn.Module,
    inputs,
    video_features: Sequence[torch.Tensor] | None,
    image_features: Sequence[torch.Tensor] | None,
    kind: str,
    strategy: str,
    generator: torch.Generator,
    **options,
) -> tuple[tuple | None, tuple | None, torch.Tensor]:
    """Perturbed vision features and the rows that got a perturbation.

    kind ``visual``: the strategy (VISUAL_PERTURBATIONS) applies to video and image features; a row is valid when it
    holds any video or image. kind ``temporal``: the strategy (TEMPORAL_PERTURBATIONS) applies to videos; a video
    with a single temporal patch keeps its features and a row is valid when one of its videos was reordered.
    Returns (video_features, image_features, valid (N,) bool).
    """
    if kind not in ("visual", "temporal"):
        raise ValueError(f"kind must be 'visual' or 'temporal', got {kind!r}")
    registry = VISUAL_PERTURBATIONS if kind == "visual" else TEMPORAL_PERTURBATIONS
    fn = registry.get(strategy)
    merge = _merge_size(model)
    n_rows = inputs["input_ids"].shape[0]
    valid = torch.zeros(n_rows, dtype=torch.bool)
    new_video = new_image = None
    if video_features is not None and len(video_features):
        out = fn(tuple(video_features), inputs["video_grid_thw"], merge, generator, **options)
        changed = [o is not None for o in out]
        new_video = tuple(o if o is not None else f for o, f in zip(out, video_features))
        for r, videos in enumerate(_row_ranges(inputs, VIDEO_TYPE)):
            valid[r] |= any(changed[v] for v in videos)
    if image_features is not None and len(image_features):
        new_image = tuple(image_features)
        if kind == "visual":
            new_image = fn(new_image, inputs["image_grid_thw"], merge, generator, **options)
            for r, images in enumerate(_row_ranges(inputs, IMAGE_TYPE)):
                valid[r] |= len(images) > 0
    return new_video, new_image, valid


def perturbed_logps(
    model: torch.nn.Module,
    inputs,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    video_features: Sequence[torch.Tensor] | None,
    kind: str,
    strategy: str,
    generator: torch.Generator,
    temperature: float = 1.0,
    image_features: Sequence[torch.Tensor] | None = None,
    with_logits: bool = False,
    **options,
) -> dict[str, torch.Tensor | None]:
    """No-grad LM pass with perturbed vision (for a trainer that already has the full-video logps).

    kind/strategy: ``visual`` in VISUAL_PERTURBATIONS (``drop`` masks attention at the vision token positions and
    keeps the original positions) or ``temporal`` in TEMPORAL_PERTURBATIONS; options go to the strategy (e.g.
    ``n_segments``). video_features: per-video features of the unperturbed videos (e.g. from :func:`encode_videos`).
    Returns logp (N, T) or None when no row can be perturbed, valid (N,) bool (rows that got a perturbation; the
    others' logp equals the unperturbed one), and logits (N, T, V) when ``with_logits``.
    """
    with torch.no_grad():
        if image_features is None and inputs.get("pixel_values") is not None:
            image_features = encode_images(model, inputs["pixel_values"], inputs["image_grid_thw"])
        override = None
        if kind == "visual" and strategy == "drop":
            vision = vision_token_mask(model, inputs["input_ids"])
            override = inputs["attention_mask"] * (~vision).to(inputs["attention_mask"].dtype)
            valid = vision.any(dim=1).cpu()
            videos, images = video_features, image_features
        else:
            videos, images, valid = perturb_features(
                model, inputs, video_features, image_features, kind, strategy, generator, **options
            )
        if not valid.any():
            return {"logp": None, "valid": valid, "logits": None}
        out = completion_logps(
            model,
            inputs,
            completion_ids,
            completion_mask,
            videos,
            images,
            override,
            temperature,
            with_logits=with_logits,
        )
    return {"logp": out["logp"], "valid": valid, "logits": out.get("logits")}


def attribution_passes(
    model: torch.nn.Module,
    inputs,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    visual: str | None = "zero",
    temporal: str | None = "shuffle",
    video_features: Sequence[torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    distance: str = "logprob",
    **options,
) -> dict[str, torch.Tensor | None]:
    """Everything the V, T and E signals need, from ONE vision pass (or the caller's ``video_features``).

    Then three no-grad LM passes: full, visual-perturbed, temporal-perturbed (``None`` skips a signal).
    Returns logp_full (N, T), entropy (N, T), logp_visual (N, T) | None, visual_valid (N,) bool,
    logp_temporal (N, T) | None (None when no video has two temporal patches), temporal_valid (N,) bool;
    with a ``distance`` other than ``logprob`` (see core.attribution.DISTRIBUTION_METRICS) also
    shift_visual / shift_temporal (N, T) between the full and perturbed next-token distributions.
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    want_logits = distance != "logprob"
    with torch.no_grad():
        if video_features is None and inputs.get("pixel_values_videos") is not None:
            video_features = encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
        image_features = None
        if inputs.get("pixel_values") is not None:
            image_features = encode_images(model, inputs["pixel_values"], inputs["image_grid_thw"])
        full = completion_logps(
            model,
            inputs,
            completion_ids,
            completion_mask,
            video_features,
            image_features,
            temperature=temperature,
            with_entropy=True,
            with_logits=want_logits,
        )
        result = {"logp_full": full["logp"], "entropy": full["entropy"]}
        for kind, strategy in (("visual", visual), ("temporal", temporal)):
            n_rows = completion_ids.shape[0]
            pert = {"logp": None, "valid": torch.zeros(n_rows, dtype=torch.bool), "logits": None}
            if strategy is not None:
                pert = perturbed_logps(
                    model,
                    inputs,
                    completion_ids,
                    completion_mask,
                    video_features,
                    kind,
                    strategy,
                    generator,
                    temperature,
                    image_features,
                    with_logits=want_logits,
                    **(options if kind == "temporal" else {}),
                )
            result[f"logp_{kind}"], result[f"{kind}_valid"] = pert["logp"], pert["valid"]
            if want_logits:
                result[f"shift_{kind}"] = (
                    None
                    if pert["logits"] is None
                    else distribution_shift(full["logits"], pert["logits"], distance, temperature=temperature)
                )
    return result
