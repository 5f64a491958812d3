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

# kwargs of the vision inputs; their first dimension counts patches or videos/images, not rows
MULTIMODAL_KEYS = (
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
    "pixel_values",
    "image_grid_thw",
)
# per-row (N, L) tensors that are left padded when batches are concatenated: key -> padding value (None: pad id)
SEQUENCE_KEYS = {"input_ids": None, "attention_mask": 0, "mm_token_type_ids": 0}
IMAGE_TYPE, VIDEO_TYPE = 1, 2  # values of mm_token_type_ids (text = 0)


def find_vl_model(model: torch.nn.Module) -> torch.nn.Module:
    """The ``Qwen2_5_VLModel`` inside ``model`` (a ForConditionalGeneration, a PEFT wrapper, or itself)."""
    from transformers import Qwen2_5_VLModel

    for module in model.modules():
        if isinstance(module, Qwen2_5_VLModel):
            return module
    raise TypeError(
        f"no Qwen2_5_VLModel inside {type(model).__name__}; this adapter supports Qwen2.5-VL only"
    )


# ----------------------------------------------------------------------------------------------------- inputs


def _size_kwargs(processor, sampling) -> dict[str, Any]:
    """``size=`` override of the video processor from ``sampling.min_pixels/max_pixels`` (None keeps its own)."""
    if sampling is None or (sampling.min_pixels is None and sampling.max_pixels is None):
        return {}
    size = dict(processor.video_processor.size)
    if sampling.min_pixels is not None:
        size["shortest_edge"] = int(sampling.min_pixels)
    if sampling.max_pixels is not None:
        size["longest_edge"] = int(sampling.max_pixels)
    return {"size": size}


def _messages(text: str, has_video: bool, completion: str | None) -> list[dict]:
    content = ([{"type": "video"}] if has_video else []) + [{"type": "text", "text": text}]
    messages = [{"role": "user", "content": content}]
    if completion is not None:
        messages.append({"role": "assistant", "content": completion})
    return messages


def build_video_inputs(
    processor,
    texts: Sequence[str],
    videos: Sequence[Any | None],
    sampling=None,
    add_generation_prompt: bool = True,
    completions: Sequence[str] | None = None,
):
    """Chat-format ``texts`` (video first, then text, as Video-R1) and run the real processor on the frames.

    videos: one ``DecodedVideo`` (frames (T, C, H, W) uint8, ``sample_fps``) or None per text. ``sampling``: a
    ``VideoSamplingConfig`` whose ``min_pixels``/``max_pixels`` override the processor's. ``completions``: assistant
    turns appended (teacher forcing / SFT; then no generation prompt). Frames are never resampled here.

    Returns a ``BatchFeature``: input_ids (N, L) left padded, attention_mask (N, L), mm_token_type_ids (N, L),
    and when a video is present pixel_values_videos (sum_v t*h*w, C*tps*p*p), video_grid_thw (n_videos, 3),
    second_per_grid_ts (n_videos,) = temporal_patch_size / sample_fps (checked).
    """
    if len(texts) != len(videos) or (completions is not None and len(completions) != len(texts)):
        raise ValueError(
            f"{len(texts)} texts, {len(videos)} videos, completions {completions and len(completions)}"
        )
    prompts = []
    for i, (text, video) in enumerate(zip(texts, videos)):
        completion = None if completions is None else completions[i]
        prompts.append(
            processor.apply_chat_template(
                _messages(text, video is not None, completion),
                tokenize=False,
                add_generation_prompt=add_generation_prompt and completion is None,
            )
        )
    present = [v for v in videos if v is not None]
    kwargs: dict[str, Any] = {}
    if present:
        kwargs = dict(
            videos=[v.frames for v in present],
            video_metadata=[v.metadata_dict() for v in present],
            do_sample_frames=False,
            **_size_kwargs(processor, sampling),
        )
    inputs = processor(text=prompts, padding=True, padding_side="left", return_tensors="pt", **kwargs)
    if "mm_token_type_ids" not in inputs:
        raise RuntimeError("the processor returned no mm_token_type_ids; positions would silently be 1-D")
    if present:
        _check_second_per_grid(
            inputs["second_per_grid_ts"], present, processor.video_processor.temporal_patch_size
        )
    return inputs


def _check_second_per_grid(
    second_per_grid_ts: torch.Tensor, videos: Sequence[Any], temporal_patch: int
) -> None:
    expected = torch.tensor([temporal_patch / float(v.sample_fps) for v in videos])
    if not torch.allclose(second_per_grid_ts.float().cpu(), expected, rtol=1e-5):
        raise RuntimeError(
            f"second_per_grid_ts {second_per_grid_ts.tolist()} != temporal_patch_size / sample_fps "
            f"{expected.tolist()}: the processor ignored the video metadata (temporal positions would be wrong)"
        )


def reencode_with_frame_permutation(
    processor, videos: Sequence[Any], perms: Sequence[torch.Tensor], sampling=None
):
    """Pixel inputs of ``videos`` with their frames reordered (the authors' code-parity temporal perturbation).

    perms[v]: (T_v,) long, frame ``i`` of the new clip is frame ``perms[v][i]``. Metadata stays that of the
    original clip. Returns a ``BatchFeature`` with pixel_values_videos, video_grid_thw, second_per_grid_ts that
    replace the originals in the model inputs (the token layout does not change).
    """
    if len(perms) != len(videos):
        raise ValueError(f"{len(perms)} permutations for {len(videos)} videos")
    frames = []
    for video, perm in zip(videos, perms):
        if sorted(perm.tolist()) != list(range(video.frames.shape[0])):
            raise ValueError(f"not a permutation of {video.frames.shape[0]} frames: {perm.tolist()}")
        frames.append(video.frames[perm])
    out = processor.video_processor(
        videos=frames,
        video_metadata=[v.metadata_dict() for v in videos],
        do_sample_frames=False,
        return_tensors="pt",
        **_size_kwargs(processor, sampling),
    )
    temporal_patch = processor.video_processor.temporal_patch_size
    out["second_per_grid_ts"] = torch.tensor([temporal_patch / float(v.sample_fps) for v in videos])
    out.pop("video_metadata", None)
    return out


# ------------------------------------------------------------------------------------ batch split / concat


def visuals_per_row(mm_token_type_ids: torch.Tensor, token_type: int) -> torch.Tensor:
    """Number of videos (``VIDEO_TYPE``) or images (``IMAGE_TYPE``) in each row: runs of that type.

    mm_token_type_ids: (N, L) -> (N,) long. Two visuals are always separated by vision start/end (text) tokens.
    """
    is_type = (mm_token_type_ids == token_type).long()
    starts = is_type[:, 1:] - is_type[:, :-1] == 1
    return is_type[:, 0] + starts.long().sum(-1)


def _visual_slices(inputs, n_rows: int) -> dict[str, list[slice]]:
    """Per row, the slice of videos / images / pixel rows belonging to it."""
    out: dict[str, list[slice]] = {}
    for kind, token_type, grid_key, pixel_key in (
        ("video", VIDEO_TYPE, "video_grid_thw", "pixel_values_videos"),
        ("image", IMAGE_TYPE, "image_grid_thw", "pixel_values"),
    ):
        if inputs.get(grid_key) is None:
            continue
        counts = visuals_per_row(inputs["mm_token_type_ids"], token_type).tolist()
        grid = inputs[grid_key]
        if sum(counts) != grid.shape[0]:
            raise ValueError(
                f"{sum(counts)} {kind} runs in mm_token_type_ids but {grid.shape[0]} rows in {grid_key}"
            )
        bounds = torch.tensor([0] + counts).cumsum(0).tolist()
        patch_bounds = torch.cat([torch.zeros(1, dtype=torch.long), grid.prod(-1).cumsum(0)]).tolist()
        out[grid_key] = [slice(bounds[r], bounds[r + 1]) for r in range(n_rows)]
        out[pixel_key] = [slice(patch_bounds[bounds[r]], patch_bounds[bounds[r + 1]]) for r in range(n_rows)]
        if kind == "video" and inputs.get("second_per_grid_ts") is not None:
            out["second_per_grid_ts"] = out[grid_key]
    return out


def split_multimodal(inputs, row_slices: Sequence[slice]) -> list[dict[str, Any]]:
    """Split a batch into row groups, carrying each group's vision inputs along.

    inputs: mapping with input_ids (N, L), mm_token_type_ids (N, L) and optional MULTIMODAL_KEYS; every other value
    must be row-indexed (first dim N). row_slices: contiguous slices of rows, e.g. ``[slice(0, 4), slice(4, 8)]``.
    Returns one dict per slice; pixel rows belong to videos by ``video_grid_thw.prod(-1)`` (images likewise).
    """
    n_rows = inputs["input_ids"].shape[0]
    per_row = _visual_slices(inputs, n_rows)
    parts = []
    for rows in row_slices:
        start, stop, step = rows.indices(n_rows)
        if step != 1 or stop <= start:
            raise ValueError(f"row slices must be non-empty and contiguous, got {rows}")
        part: dict[str, Any] = {}
        for key, value in inputs.items():
            if value is None:
                part[key] = None
            elif key in per_row:
                part[key] = value[per_row[key][start].start : per_row[key][stop - 1].stop]
            elif key in MULTIMODAL_KEYS:
                raise ValueError(f"{key} given without its grid (video_grid_thw / image_grid_thw)")
            elif len(value) == n_rows:
                part[key] = value[start:stop]
            else:
                raise ValueError(
                    f"cannot split {key!r}: first dimension {len(value)} is not the row count {n_rows}"
                )
        parts.append(part)
    return parts


def _left_pad(value: torch.Tensor, length: int, pad_value: int) -> torch.Tensor:
    if value.shape[1] == length:
        return value
    pad = value.new_full((value.shape[0], length - value.shape[1]), pad_value)
    return torch.cat([pad, value], dim=1)


def concat_multimodal(parts: Sequence[Any], pad_token_id: int | None = None) -> dict[str, Any]:
    """Inverse of :func:`split_multimodal`: concatenate row groups (and their vision inputs) in order.

    Sequence tensors (input_ids, attention_mask, mm_token_type_ids) of different lengths are left padded
    (input_ids with ``pad_token_id``, which is then required). Other values are concatenated along dim 0; vision
    keys may be absent from parts without videos/images.
    """
    keys = list(dict.fromkeys(key for p in parts for key in p))
    for key in keys:
        if key not in MULTIMODAL_KEYS and any(key not in p for p in parts):
            raise ValueError(f"{key!r} is missing from some parts (only vision keys may be absent)")
    length = max(p["input_ids"].shape[1] for p in parts)
    out: dict[str, Any] = {}
    for key in keys:
        values = [p[key] for p in parts if p.get(key) is not None]
        if not values:
            out[key] = None
        elif key in SEQUENCE_KEYS:
            pad = SEQUENCE_KEYS[key] if SEQUENCE_KEYS[key] is not None else pad_token_id
            if pad is None and any(v.shape[1] != length for v in values):
                raise ValueError(
                    "parts have different sequence lengths: pass pad_token_id to left pad input_ids"
                )
            out[key] = torch.cat([_left_pad(v, length, pad) for v in values])
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.cat(values)
        else:
            out[key] = [item for v in values for item in v]
    return out


# ------------------------------------------------------------------------------------------- vision pass


def _split_rows(pixels: torch.Tensor, grid_thw: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.split(pixels, grid_thw.prod(-1).tolist()))


def encode_videos(
    model: torch.nn.Module,
    pixel_values_videos: torch.Tensor,
    video_grid_thw: torch.Tensor,
    dedupe: bool = True,
) -> tuple[torch.Tensor, ...]:
    """One vision-tower call for the batch's videos; returns per-video features ``(t*h*w/merge**2, D)``.

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
    feats = vl.get_video_features(
        torch.cat([videos[u] for u in unique]), video_grid_thw[unique], return_dict=True
    ).pooler_output
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
