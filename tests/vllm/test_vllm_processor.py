"""vLLM's OWN input processing of our video requests (``Qwen2_5_VLMultiModalProcessor.apply``, as its renderer calls
it in ``renderers/base.py _process_multimodal``), against the trainer's processor output. Runs where vLLM imports
(skipped otherwise, e.g. in CI: vLLM 0.33.0 needs torch 2.14.0); the processor itself runs on CPU.

Pixels are compared with ``mm_device_do_normalize=False`` (the HF processor normalises on CPU); vLLM's default for
Qwen2.5-VL normalises uint8 pixels on the GPU instead.
"""

import pytest
import torch

from videoktr.data.video import VideoSamplingConfig
from videoktr.models.qwen2_5_vl import build_video_inputs
from videoktr.vllm.payload import patch_shuffled_video, video_request, video_token_id

pytest.importorskip("vllm.multimodal.processing.processor", reason="vLLM does not import here")


@pytest.fixture(scope="module")
def vllm_processor(tiny_dir):
    from vllm.config import ModelConfig
    from vllm.multimodal import MULTIMODAL_REGISTRY

    def make(dtype: str):
        config = ModelConfig(
            model=str(tiny_dir),
            tokenizer=str(tiny_dir),
            dtype=dtype,
            limit_mm_per_prompt={"image": 0, "video": 1},
            mm_device_do_normalize=False,
        )
        return MULTIMODAL_REGISTRY.create_processor(config)

    return make


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize(
    "n_frames, fps, pixels", [(8, 2.0, (None, None)), (6, 0.5, (3136, 6272)), (5, 1.3, (None, 3136))]
)
@pytest.mark.parametrize("shuffled", [False, True])
def test_vllm_processes_the_request_into_the_trainers_inputs(
    tiny, vllm_processor, make_video, dtype, n_frames, fps, pixels, shuffled
):
    from vllm.multimodal.processing.context import TimingContext
    from vllm.multimodal.processing.inputs import ProcessorInputs

    _, processor = tiny
    sampling = VideoSamplingConfig(min_pixels=pixels[0], max_pixels=pixels[1])
    video = make_video(n_frames, n_frames=n_frames, fps=fps)
    batch = build_video_inputs(processor, ["What happens first?"], [video], sampling=sampling)
    ids = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    rows, t = batch["pixel_values_videos"], int(batch["video_grid_thw"][0, 0])
    frames, expected = None, rows
    if shuffled:  # T-GRPO: temporal patches reversed
        perm = torch.arange(t - 1, -1, -1)
        frames = patch_shuffled_video(video.frames, perm, processor.video_processor.temporal_patch_size)
        expected = rows.view(t, -1, rows.size(-1))[perm].reshape_as(rows)
    request = video_request(processor, ids, video, sampling, frames=frames)
    engine = vllm_processor(dtype)
    items = engine.info.parse_mm_data(request["multi_modal_data"])
    inputs = ProcessorInputs(
        request["prompt_token_ids"], items, hf_processor_mm_kwargs=request["mm_processor_kwargs"]
    )
    out = engine.apply(inputs, TimingContext(enabled=False))
    video_kwargs = out["mm_kwargs"]["video"][0]
    assert out["prompt_token_ids"] == ids
    token = video_token_id(processor)
    placeholder = out["mm_placeholders"]["video"][0]
    assert (placeholder.offset, placeholder.length) == (ids.index(token), ids.count(token))
    assert torch.equal(video_kwargs["video_grid_thw"].data.view(-1), batch["video_grid_thw"][0])
    model_dtype = getattr(
        torch, dtype
    )  # vLLM casts floating outputs (second_per_grid_ts too) to the model dtype
    torch.testing.assert_close(
        video_kwargs["second_per_grid_ts"].data.view(-1), batch["second_per_grid_ts"].to(model_dtype)
    )
    torch.testing.assert_close(
        video_kwargs["pixel_values_videos"].data, expected.to(model_dtype), rtol=0, atol=0
    )


@pytest.mark.parametrize(
    "n_frames, fps, dtype", [(4, 2.0, "bfloat16"), (8, 2.0, "float32"), (8, 0.5, "bfloat16")]
)
def test_vllm_mrope_positions_against_the_trainer(tiny, vllm_processor, make_video, n_frames, fps, dtype):
    """vLLM's own ``get_mrope_input_positions`` on the processed request against transformers' ``get_rope_index``:
    equal exactly when ``payload.positions_agree`` says so (docs/vllm.md, Known differences)."""
    from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration as VLLMQwen
    from vllm.multimodal.inputs import MultiModalFeatureSpec
    from vllm.multimodal.processing.context import TimingContext
    from vllm.multimodal.processing.inputs import ProcessorInputs

    from videoktr.vllm.payload import positions_agree

    model, processor = tiny
    video = make_video(n_frames, n_frames=n_frames, fps=fps)
    batch = build_video_inputs(processor, ["What happens first?"], [video])
    ids = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    request = video_request(processor, ids, video, None)
    engine = vllm_processor(dtype)
    items = engine.info.parse_mm_data(request["multi_modal_data"])
    inputs = ProcessorInputs(
        request["prompt_token_ids"], items, hf_processor_mm_kwargs=request["mm_processor_kwargs"]
    )
    out = engine.apply(inputs, TimingContext(enabled=False))
    feature = MultiModalFeatureSpec(
        data=out["mm_kwargs"]["video"][0],
        modality="video",
        identifier="v0",
        mm_position=out["mm_placeholders"]["video"][0],
    )
    host = type("Host", (), {"config": model.config, "iter_mm_grid_thw": VLLMQwen.iter_mm_grid_thw})()
    theirs, _ = VLLMQwen.get_mrope_input_positions(host, out["prompt_token_ids"], [feature])
    ours, _ = model.model.get_rope_index(
        batch["input_ids"],
        batch["mm_token_type_ids"],
        video_grid_thw=batch["video_grid_thw"],
        second_per_grid_ts=batch["second_per_grid_ts"],
        attention_mask=batch["attention_mask"],
    )
    ours = ours[:, 0][:, batch["attention_mask"][0].bool()]
    grid = batch["video_grid_thw"][0].tolist()
    tokens_per_second = model.config.vision_config.tokens_per_second
    agree = positions_agree(grid, 2 / fps, tokens_per_second, processor, getattr(torch, dtype))
    assert torch.equal(theirs.long(), ours.long()) == agree == (n_frames == 4)
