"""The vLLM request of a video prompt gives vLLM the trainer's prompt: same token ids (placeholder count included),
same pixels, same grid and second_per_grid_ts, through vLLM 0.33.0's input processing (emulated, see conftest)."""

import pytest
import torch

from videoktr.data.video import VideoSamplingConfig
from videoktr.models.qwen2_5_vl import build_video_inputs, reencode_with_frame_permutation
from videoktr.vllm.payload import (
    collapse_video_placeholders,
    expected_video_tokens,
    patch_shuffled_video,
    video_request,
    video_token_id,
)

QUESTION = "What happens first?"


def trainer_inputs(processor, video, sampling):
    batch = build_video_inputs(processor, [QUESTION], [video], sampling=sampling)
    ids = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    return ids, batch


def test_collapse_reduces_each_run_to_one_token():
    # 7 = video token: runs of 3 and 2 become one each; other tokens and repeats of them stay
    assert collapse_video_placeholders([1, 7, 7, 7, 2, 2, 7, 7, 3], 7) == [1, 7, 2, 2, 7, 3]
    assert collapse_video_placeholders([1, 2], 7) == [1, 2]


@pytest.mark.parametrize(
    "n_frames, fps, pixels",
    [(8, 2.0, (None, None)), (6, 0.5, (3136, 6272)), (5, 1.3, (None, 3136))],  # odd T: the processor pads
)
def test_request_gives_vllm_the_trainers_prompt(
    tiny, tiny_dir, make_video, vllm_process, n_frames, fps, pixels
):
    _, processor = tiny
    sampling = VideoSamplingConfig(min_pixels=pixels[0], max_pixels=pixels[1])
    video = make_video(3, n_frames=n_frames, fps=fps)
    ids, batch = trainer_inputs(processor, video, sampling)
    request = video_request(processor, ids, video, sampling)
    token = video_token_id(processor)
    assert request["prompt_token_ids"].count(token) == 1
    assert request["mm_processor_kwargs"]["do_sample_frames"] is False
    vllm = vllm_process(tiny_dir, request)
    assert vllm["prompt_token_ids"] == ids  # the prompt vLLM generates from is the trainer's
    merge = processor.video_processor.merge_size
    n = expected_video_tokens(batch["video_grid_thw"][0].tolist(), merge)
    assert vllm["prompt_token_ids"].count(token) == ids.count(token) == n
    assert torch.equal(vllm["video_grid_thw"], batch["video_grid_thw"])
    torch.testing.assert_close(vllm["second_per_grid_ts"].float(), batch["second_per_grid_ts"].float())
    torch.testing.assert_close(vllm["second_per_grid_ts"].float(), torch.tensor([2 / fps]))
    torch.testing.assert_close(vllm["pixel_values_videos"], batch["pixel_values_videos"], rtol=0, atol=0)


def test_pixel_budget_reaches_vllm(tiny, tiny_dir, make_video, vllm_process):
    """A smaller max_pixels shrinks the grid in both (a request without the size override would not)."""
    _, processor = tiny
    video = make_video(4, n_frames=4, fps=2.0, height=112, width=224)
    small = VideoSamplingConfig(max_pixels=3136)
    ids, batch = trainer_inputs(processor, video, small)
    request = video_request(processor, ids, video, small)
    assert torch.equal(vllm_process(tiny_dir, request)["video_grid_thw"], batch["video_grid_thw"])
    request.pop("mm_processor_kwargs")
    unbounded = vllm_process(tiny_dir, request)["video_grid_thw"]
    assert unbounded[0].prod() > batch["video_grid_thw"][0].prod()


def test_tokenizer_only_prompt_equals_collapsed_trainer_prompt(tiny, make_video):
    """The eval backend tokenizes the chat template alone (no pixels); it gives the same request ids."""
    _, processor = tiny
    video = make_video(5)
    ids, _ = trainer_inputs(processor, video, None)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    plain = processor.tokenizer(text)["input_ids"]
    assert (
        video_request(processor, plain, video, None)["prompt_token_ids"]
        == video_request(processor, ids, video, None)["prompt_token_ids"]
    )


def test_expanded_ids_would_be_expanded_again(tiny, tiny_dir, make_video, vllm_process):
    """Why the request collapses the placeholders: vLLM 0.33 expands the first one whatever follows."""
    _, processor = tiny
    video = make_video(6)
    ids, _ = trainer_inputs(processor, video, None)
    request = video_request(processor, ids, video, None)
    request["prompt_token_ids"] = ids
    token = video_token_id(processor)
    assert vllm_process(tiny_dir, request)["prompt_token_ids"].count(token) == 2 * ids.count(token) - 1


@pytest.mark.parametrize("n_frames", [8, 7])
def test_patch_shuffled_frames_give_the_permuted_pixel_rows(
    tiny, tiny_dir, make_video, vllm_process, n_frames
):
    """T-GRPO permutes temporal patches of the pixel rows; the vLLM request carries frames that process to them."""
    _, processor = tiny
    video = make_video(7, n_frames=n_frames)
    ids, batch = trainer_inputs(processor, video, None)
    tps = processor.video_processor.temporal_patch_size
    t = int(batch["video_grid_thw"][0, 0])
    perm = torch.tensor([2, 0, 3, 1])
    assert t == 4
    rows = batch["pixel_values_videos"]
    expected = rows.view(t, -1, rows.size(-1))[perm].reshape_as(rows)
    frames = patch_shuffled_video(video.frames, perm, tps)
    out = vllm_process(tiny_dir, video_request(processor, ids, video, None, frames=frames))
    assert out["prompt_token_ids"] == ids
    torch.testing.assert_close(out["pixel_values_videos"], expected, rtol=0, atol=0)
    torch.testing.assert_close(out["second_per_grid_ts"].float(), batch["second_per_grid_ts"].float())
    if n_frames % tps == 0:  # and equals the trainer's frame-level re-encoding of the same order
        frame_perm = torch.cat([torch.arange(p * tps, (p + 1) * tps) for p in perm.tolist()])
        again = reencode_with_frame_permutation(processor, [video], [frame_perm])
        torch.testing.assert_close(out["pixel_values_videos"], again["pixel_values_videos"], rtol=0, atol=0)


def test_bad_frames_and_prompts_are_refused(tiny, make_video):
    _, processor = tiny
    video = make_video(8)
    ids, _ = trainer_inputs(processor, video, None)
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\) uint8"):
        video_request(processor, ids, video, None, frames=video.frames.float())
    token = video_token_id(processor)
    with pytest.raises(ValueError, match="exactly one video placeholder run, found 0"):
        video_request(processor, [t for t in ids if t != token], video, None)
    with pytest.raises(ValueError, match="not a permutation of 4"):
        patch_shuffled_video(video.frames, torch.tensor([0, 1, 2]), 2)


@pytest.mark.parametrize(
    "n_frames, fps, dtype, same",  # tiny: merged side 4; last temporal index (t - 1) * 2 * (2 / fps)
    [
        (8, 2.0, torch.float32, False),
        (8, 2.0, torch.bfloat16, False),
        (4, 2.0, torch.bfloat16, True),
        (8, 0.5, torch.float32, False),
    ],
)
def test_mrope_positions_of_vllm_and_the_trainer(
    tiny, tiny_dir, make_video, vllm_process, vllm_mrope_positions, n_frames, fps, dtype, same
):
    """The M-RoPE positions vLLM gives the prompt equal the trainer's (transformers ``get_rope_index``) when the
    scaled temporal index stays below the merged frame side (``videoktr.vllm.payload.positions_agree``);
    otherwise the text after the video starts at different positions (transformers 5.20-5.23 continue after
    ``max(h, w)``, vLLM 0.33 after ``max(all vision positions) + 1``), and the check says so."""
    from videoktr.vllm.payload import positions_agree

    model, processor = tiny
    video = make_video(9, n_frames=n_frames, fps=fps)
    ids, batch = trainer_inputs(processor, video, None)
    request = video_request(processor, ids, video, None)
    vllm = vllm_process(tiny_dir, request, model_dtype=dtype)
    grid = vllm["video_grid_thw"][0].tolist()
    tokens_per_second = model.config.vision_config.tokens_per_second
    t_factor = vllm["second_per_grid_ts"].item() * tokens_per_second
    token = video_token_id(processor)
    ours = vllm_mrope_positions(ids, ids.index(token), grid, t_factor, processor.video_processor.merge_size)
    theirs, _ = model.model.get_rope_index(
        batch["input_ids"],
        batch["mm_token_type_ids"],
        video_grid_thw=batch["video_grid_thw"],
        second_per_grid_ts=batch["second_per_grid_ts"],
        attention_mask=batch["attention_mask"],
    )
    theirs = theirs[:, 0][:, batch["attention_mask"][0].bool()].numpy()
    agree = positions_agree(grid, vllm["second_per_grid_ts"].item(), tokens_per_second, processor)
    assert bool((ours == theirs).all()) == agree == same
