import pytest
import torch

from videoktr.core.perturbations import permute_temporal_patches
from videoktr.data.video import VideoSamplingConfig, decode_video, write_video
from videoktr.models import qwen2_5_vl as q

TOL = 1e-5


def frames_for_patch_perm(perm: list[int], tps: int = 2) -> torch.Tensor:
    """Frame order that moves whole temporal patches: patch p = frames [tps*p, tps*p + tps)."""
    return torch.tensor([tps * p + k for p in perm for k in range(tps)])


def completions(n_rows: int, length: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(20, 400, (n_rows, length), generator=g)
    mask = torch.ones(n_rows, length, dtype=torch.long)
    mask[0, length - 2 :] = 0  # a shorter completion (right padded)
    return ids, mask


# ------------------------------------------------------------------------------------------------ inputs


def test_build_video_inputs_passes_real_fps_and_token_types(tiny, video):
    model, processor = tiny
    videos = [video(0, fps=2.0), video(1, fps=4.0), None]
    inputs = q.build_video_inputs(processor, ["a", "b", "c"], videos)
    # second_per_grid_ts = temporal_patch_size / sample_fps = 2/2, 2/4
    assert inputs["second_per_grid_ts"].tolist() == [1.0, 0.5]
    # 8 frames 56x112 -> grid (8/2, 56/14, 112/14) = (4, 4, 8); tokens = 4*4*8/2^2 = 32 per video
    assert inputs["video_grid_thw"].tolist() == [[4, 4, 8], [4, 4, 8]]
    types = inputs["mm_token_type_ids"]
    assert (types == q.VIDEO_TYPE).sum(1).tolist() == [32, 32, 0]
    assert torch.equal(types == q.VIDEO_TYPE, inputs["input_ids"] == model.config.video_token_id)
    assert (inputs["attention_mask"][:, -1] == 1).all()  # left padding


def test_temporal_positions_are_not_collapsed(tiny, video):
    model, processor = tiny
    inputs = q.build_video_inputs(processor, ["a", "b"], [video(0, fps=2.0), video(1, fps=1.0)])
    positions, _ = model.model.get_rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        video_grid_thw=inputs["video_grid_thw"],
        second_per_grid_ts=inputs["second_per_grid_ts"],
        attention_mask=inputs["attention_mask"],
    )
    tps = model.config.vision_config.tokens_per_second  # 2
    for row, fps in enumerate((2.0, 1.0)):
        temporal = positions[0, row][inputs["mm_token_type_ids"][row] == q.VIDEO_TYPE].reshape(4, 8)
        assert (temporal == temporal[:, :1]).all()  # one temporal id per patch
        steps = temporal[1:, 0] - temporal[:-1, 0]
        # interval = tokens_per_second * second_per_grid = 2 * (2 / fps): fps 2 -> 2, fps 1 -> 4
        assert steps.tolist() == [int(tps * 2 / fps)] * 3


def test_build_video_inputs_with_completions_and_sampling(tiny, video):
    _, processor = tiny
    sampling = VideoSamplingConfig(num_frames=8, min_pixels=28 * 28, max_pixels=56 * 56)
    inputs = q.build_video_inputs(
        processor, ["a"], [video(0)], sampling=sampling, completions=["<answer>A</answer>"]
    )
    # 56x112 capped at 56*56 pixels -> smart_resize to 28x56 -> grid (4, 2, 4)
    assert inputs["video_grid_thw"].tolist() == [[4, 2, 4]]
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    assert text.endswith("<|im_start|>assistant\n<answer>A</answer><|im_end|>\n")


def test_mp4_round_trip(tiny, tmp_path, video):
    _, processor = tiny
    frames = video(0, n_frames=12).frames.permute(0, 2, 3, 1).contiguous()  # (T, H, W, 3)
    path = write_video(tmp_path / "clip.mp4", frames, fps=6.0)
    decoded = decode_video(path, VideoSamplingConfig(num_frames=6))
    inputs = q.build_video_inputs(processor, ["Which way?"], [decoded])
    # 6 of 12 frames at 6 fps -> sample_fps 3 -> second_per_grid_ts = 2/3
    assert inputs["second_per_grid_ts"].tolist() == pytest.approx([2 / 3])
    assert inputs["video_grid_thw"].tolist() == [[3, 4, 8]]


# ------------------------------------------------------------------------------------- split / concat


def test_split_and_concat_round_trip(tiny, video):
    _, processor = tiny
    texts = ["short", "a much longer question here", "c", "d"]
    inputs = q.build_video_inputs(processor, texts, [video(0), None, video(1, n_frames=4), video(2)])
    parts = q.split_multimodal(inputs, [slice(0, 1), slice(1, 3), slice(3, 4)])
    assert [p["video_grid_thw"].shape[0] for p in parts] == [1, 1, 1]
    # rows 1-2 hold one video of grid (2, 4, 8): 2*4*8 = 64 pixel rows, after video 0's 4*4*8 = 128
    assert torch.equal(parts[1]["pixel_values_videos"], inputs["pixel_values_videos"][128:192])
    assert parts[1]["second_per_grid_ts"].tolist() == [1.0]
    merged = q.concat_multimodal(parts, pad_token_id=processor.tokenizer.pad_token_id)
    for key, value in inputs.items():
        assert torch.equal(merged[key], value), key


def test_concat_pads_to_the_longest_on_the_left(tiny, video):
    _, processor = tiny
    a = q.build_video_inputs(processor, ["x"], [video(0)])
    b = q.build_video_inputs(processor, ["a longer question with more words"], [None])
    with pytest.raises(ValueError, match="pad_token_id"):
        q.concat_multimodal([a, b])
    merged = q.concat_multimodal([a, b], pad_token_id=processor.tokenizer.pad_token_id)
    length = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
    assert merged["input_ids"].shape == (2, length)
    assert merged["attention_mask"].sum(1).tolist() == [a["attention_mask"].sum(), b["attention_mask"].sum()]


# ---------------------------------------------------------------------------------------- vision pass


def test_shared_vision_forward_equals_plain_forward(tiny, video):
    model, processor = tiny
    inputs = q.build_video_inputs(processor, ["a", "b", "c"], [video(0), video(1), None])
    with torch.no_grad():
        plain = model(**inputs).logits
        feats = q.encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
        shared = q.forward_with_video_features(model, inputs, feats)
    assert (plain - shared).abs().max() <= TOL
    # and the features matter: zeroed features change the logits
    with torch.no_grad():
        zeroed = q.forward_with_video_features(model, inputs, tuple(torch.zeros_like(f) for f in feats))
    assert (plain[:2] - zeroed[:2]).abs().max() > 1e-3


def test_dedupe_encodes_copies_once_and_keeps_autograd(tiny, video):
    model, processor = tiny
    g = 3
    inputs = q.build_video_inputs(processor, ["a"] * g + ["b"], [video(0)] * g + [video(1)])
    with q.VisionCallCounter(model) as counter:
        feats = q.encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
    assert counter.count == 1
    assert feats[0] is feats[1] is feats[2] and feats[3] is not feats[0]
    with torch.no_grad():
        plain = q.encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"], dedupe=False)
    assert all((a - b).abs().max() <= TOL for a, b in zip(feats, plain))
    # gradients of all G copies reach the vision tower through the single encoding
    patch = model.model.visual.patch_embed.proj.weight
    patch.grad = None
    q.forward_with_video_features(model, inputs, feats).sum().backward()
    assert patch.grad is not None and patch.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_vision_counter_counts_plain_forwards(tiny, video):
    model, processor = tiny
    inputs = q.build_video_inputs(processor, ["a"], [video(0)])
    with q.VisionCallCounter(model) as counter, torch.no_grad():
        model(**inputs)
        model(**inputs)
    assert counter.count == 2


@pytest.mark.parametrize("patch_perm", [[2, 0, 3, 1], [3, 2, 1, 0]])
def test_permuted_features_equal_reencoded_permuted_frames(tiny, video, patch_perm):
    model, processor = tiny
    clip = video(0)
    inputs = q.build_video_inputs(processor, ["Which way?"], [clip])
    perm = torch.tensor(patch_perm)
    reenc = q.reencode_with_frame_permutation(processor, [clip], [frames_for_patch_perm(patch_perm)])
    assert torch.equal(reenc["video_grid_thw"], inputs["video_grid_thw"])
    assert torch.equal(reenc["second_per_grid_ts"], inputs["second_per_grid_ts"])
    with torch.no_grad():
        (feat,) = q.encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
        (ref,) = q.encode_videos(model, reenc["pixel_values_videos"], reenc["video_grid_thw"])
        permuted = permute_temporal_patches(feat, 4, perm)
        assert (permuted - ref).abs().max() <= TOL
        assert (feat - ref).abs().max() > 1e-3  # the permutation did change the features
        logits_perm = q.forward_with_video_features(model, inputs, (permuted,))
        logits_ref = model(**{**inputs, **reenc}).logits
    assert (logits_perm - logits_ref).abs().max() <= TOL


# ----------------------------------------------------------------------------------------- LM passes


def test_completion_logps_matches_a_manual_pass(tiny, video):
    model, processor = tiny
    inputs = q.build_video_inputs(processor, ["a", "b"], [video(0), None])
    ids, mask = completions(2)
    with torch.no_grad():
        out = q.completion_logps(
            model, inputs, ids, mask, temperature=0.7, with_entropy=True, with_logits=True
        )
        full = model(
            input_ids=torch.cat([inputs["input_ids"], ids], 1),
            attention_mask=torch.cat([inputs["attention_mask"], mask], 1),
            mm_token_type_ids=torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(ids)], 1),
            pixel_values_videos=inputs["pixel_values_videos"],
            video_grid_thw=inputs["video_grid_thw"],
            second_per_grid_ts=inputs["second_per_grid_ts"],
        ).logits
    p = inputs["input_ids"].shape[1]
    logp_all = torch.log_softmax(full[:, p - 1 : -1] / 0.7, -1)  # position p-1 predicts completion token 0
    expected = logp_all.gather(-1, ids[..., None]).squeeze(-1)
    assert (out["logp"] - expected).abs().max() <= TOL
    assert (out["entropy"] + (logp_all.exp() * logp_all).sum(-1)).abs().max() <= TOL
    assert out["logits"].shape == (2, 5, model.config.text_config.vocab_size)


def test_missing_token_types_is_an_error(tiny, video):
    model, processor = tiny
    inputs = dict(q.build_video_inputs(processor, ["a"], [video(0)]))
    feats = q.encode_videos(model, inputs.pop("pixel_values_videos"), inputs["video_grid_thw"])
    inputs.pop("mm_token_type_ids")
    with pytest.raises(ValueError, match="mm_token_type_ids"):
        q.forward_with_video_features(model, inputs, feats)


def test_drop_masks_exactly_the_video_positions(tiny, video):
    model, processor = tiny
    inputs = q.build_video_inputs(processor, ["a", "b"], [video(0), None])
    ids, mask = completions(2)
    vision = q.vision_token_mask(model, inputs["input_ids"])
    assert torch.equal(vision, inputs["mm_token_type_ids"] == q.VIDEO_TYPE)  # 32 video tokens in row 0 only
    with torch.no_grad():
        feats = q.encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
        dropped = q.perturbed_logps(model, inputs, ids, mask, feats, "visual", "drop", torch.Generator())
        zero_feats = tuple(torch.zeros_like(f) for f in feats)
        dropped_zero = q.perturbed_logps(
            model, inputs, ids, mask, zero_feats, "visual", "drop", torch.Generator()
        )
        full = q.completion_logps(model, inputs, ids, mask, feats)
    assert dropped["valid"].tolist() == [True, False]
    # with the video positions masked, the video's content cannot matter
    assert (dropped["logp"] - dropped_zero["logp"]).abs().max() <= TOL
    assert (dropped["logp"][0] - full["logp"][0]).abs().max() > 1e-4
    # the row without video is untouched
    assert (dropped["logp"][1] - full["logp"][1]).abs().max() <= TOL


def test_attribution_passes_use_one_vision_pass(tiny, video):
    model, processor = tiny
    g = 2
    inputs = q.build_video_inputs(processor, ["a"] * g + ["b"] * g, [video(0)] * g + [video(1)] * g)
    ids, mask = completions(2 * g)
    with q.VisionCallCounter(model) as counter:
        out = q.attribution_passes(model, inputs, ids, mask, visual="zero", temporal="shuffle")
    assert counter.count == 1
    with torch.no_grad():
        plain = q.completion_logps(model, inputs, ids, mask, with_entropy=True)
    assert (out["logp_full"] - plain["logp"]).abs().max() <= TOL
    assert (out["entropy"] - plain["entropy"]).abs().max() <= TOL
    assert out["visual_valid"].all() and out["temporal_valid"].all()
    assert (out["logp_full"] - out["logp_visual"]).abs().max() > 1e-4
    assert (out["logp_full"] - out["logp_temporal"]).abs().max() > 1e-6
    # with the caller's features (captured from the policy forward) no vision pass at all
    feats = q.encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
    with q.VisionCallCounter(model) as counter:
        again = q.attribution_passes(
            model, inputs, ids, mask, video_features=feats, generator=torch.Generator().manual_seed(0)
        )
    assert counter.count == 0
    assert (again["logp_temporal"] - out["logp_temporal"]).abs().max() <= TOL  # same default seed


def test_temporal_pass_matches_reencoded_shuffle(tiny, video):
    """perturbed_logps('temporal', 'reverse') == teacher forcing on the re-encoded reversed clip."""
    model, processor = tiny
    clip = video(3)
    inputs = q.build_video_inputs(processor, ["a"], [clip])
    ids, mask = completions(1)
    with torch.no_grad():
        feats = q.encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
        out = q.perturbed_logps(model, inputs, ids, mask, feats, "temporal", "reverse", torch.Generator())
        reenc = q.reencode_with_frame_permutation(processor, [clip], [frames_for_patch_perm([3, 2, 1, 0])])
        ref = q.completion_logps(model, {**inputs, **reenc}, ids, mask)
    assert (out["logp"] - ref["logp"]).abs().max() <= TOL


def test_single_temporal_patch_has_no_temporal_signal(tiny, video):
    model, processor = tiny
    inputs = q.build_video_inputs(processor, ["a", "b"], [video(0, n_frames=2), None])  # t = 2/2 = 1
    ids, mask = completions(2)
    out = q.attribution_passes(model, inputs, ids, mask, visual="half", temporal="shuffle")
    assert out["logp_temporal"] is None and not out["temporal_valid"].any()
    assert out["visual_valid"].tolist() == [True, False]


def test_replace_and_distances(tiny, video):
    model, processor = tiny
    inputs = q.build_video_inputs(processor, ["a", "a", "b"], [video(0), video(0), video(1)])
    ids, mask = completions(3)
    out = q.attribution_passes(
        model, inputs, ids, mask, visual="replace", temporal="segment_shuffle", distance="jsd", n_segments=2
    )
    assert out["shift_visual"].shape == (3, 5) and (out["shift_visual"] > 0).all()
    assert out["shift_temporal"].shape == (3, 5) and (out["shift_temporal"] >= 0).all()
    single = q.build_video_inputs(processor, ["a", "a"], [video(0), video(0)])
    with pytest.raises(Exception, match="'zero'"):
        q.attribution_passes(model, single, *completions(2), visual="replace")
