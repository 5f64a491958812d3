"""Every model family on its own tiny model (transformers' classes and processors): the shared-vision forward equals
the plain forward, the feature-level temporal counterfactual equals re-encoding the frame-permuted video, an
unsupported family or a processor without video is refused with the supported list."""

from __future__ import annotations

import pytest
import torch
from trl.trainer.utils import add_fused_lm_head

from videoktr.core.perturbations import permute_temporal_patches
from videoktr.errors import UserError
from videoktr.models.families import FAMILIES, family_of
from videoktr.models.forwards import QwenVLForwards
from videoktr.models.inputs import build_video_inputs, reencode_with_frame_permutation

from ..conftest import _make_video as make_video

ARCHS = ["qwen2_5_vl", "qwen2_vl", "qwen3_vl", "qwen3_5"]


@pytest.fixture(scope="session")
def family_models(tmp_path_factory):
    """arch -> (model, processor, forwards) of its tiny model, built once per session."""
    from videoktr.models.tiny import build_tiny_model, load_model_and_processor

    out = {}

    def get(arch):
        if arch not in out:
            path = build_tiny_model(tmp_path_factory.mktemp(f"tiny_{arch}"), arch=arch)
            model, processor = load_model_and_processor(path)
            model.eval()
            add_fused_lm_head(model, outputs=("log_probs", "entropy"))  # as KTRTrainer's policy has
            out[arch] = (model, processor, QwenVLForwards(model.config, processor))
        return out[arch]

    return get


def _batch(processor, videos, completion_len=5):
    """Prompt + a fixed completion per row, and the trainer's per-row video dict."""
    inputs = build_video_inputs(processor, ["What happens first?"] * len(videos), videos)
    n = inputs["input_ids"].shape[0]
    completion = torch.arange(300, 300 + completion_len).repeat(n, 1)  # ordinary tokens (specials are < 20)
    input_ids = torch.cat([inputs["input_ids"], completion], dim=1)
    attention_mask = torch.cat([inputs["attention_mask"], torch.ones_like(completion)], dim=1)
    grid = inputs["video_grid_thw"]
    temporal_patch = processor.video_processor.temporal_patch_size
    video = {
        "pixel_values_videos": list(torch.split(inputs["pixel_values_videos"], grid.prod(-1).tolist())),
        "video_grid_thw": grid,
        "second_per_grid_ts": torch.tensor([temporal_patch / v.sample_fps for v in videos]),
    }
    return input_ids, attention_mask, completion_len, video


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_vision_forward_equals_the_plain_forward(family_models, arch):
    model, processor, forwards = family_models(arch)
    videos = [make_video(0), make_video(0), make_video(1)]  # two copies share one encoding
    input_ids, mask, keep, video = _batch(processor, videos)
    with torch.no_grad():
        plain, _ = forwards.token_logps(model, input_ids, mask, keep, video)
        features = forwards.video_features(model, video["pixel_values_videos"], video["video_grid_thw"])
        shared, _ = forwards.token_logps(model, input_ids, mask, keep, video, features=features)
    assert features[0] is features[1]  # one vision pass per distinct video
    if FAMILIES.get(arch).deepstack:
        assert features[0].shape[-1] > forwards.hidden_size  # the DeepStack maps travel with the features
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_temporal_counterfactual_equals_reencoding_the_permuted_video(family_models, arch):
    model, processor, forwards = family_models(arch)
    video_in = make_video(3, n_frames=8)  # 4 temporal patches of 2 frames
    input_ids, mask, keep, video = _batch(processor, [video_in])
    patch_perm = torch.tensor([2, 0, 3, 1])
    frame_perm = torch.stack([2 * patch_perm, 2 * patch_perm + 1], dim=1).reshape(-1)
    t = int(video["video_grid_thw"][0, 0])
    with torch.no_grad():
        features = forwards.video_features(model, video["pixel_values_videos"], video["video_grid_thw"])
        shuffled = (permute_temporal_patches(features[0], t, patch_perm),)
        by_features, _ = forwards.token_logps(model, input_ids, mask, keep, video, features=shuffled)
        pixels = reencode_with_frame_permutation(processor, [video_in], [frame_perm])["pixel_values_videos"]
        reencoded, _ = forwards.token_logps(
            model, input_ids, mask, keep, {**video, "pixel_values_videos": [pixels]}
        )
        original, _ = forwards.token_logps(model, input_ids, mask, keep, video, features=features)
    torch.testing.assert_close(by_features, reencoded, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(by_features, original, atol=1e-4)  # the shuffle does change the output
    if FAMILIES.get(arch).deepstack:
        # permuting only the main features (DeepStack maps left in order) is NOT the re-encoded video
        main = forwards.hidden_size
        partial = features[0].clone()
        partial[:, :main] = permute_temporal_patches(features[0][:, :main], t, patch_perm)
        wrong, _ = forwards.token_logps(model, input_ids, mask, keep, video, features=(partial,))
        assert not torch.allclose(wrong, reencoded, atol=1e-4)


def test_zeroed_features_zero_the_deepstack_maps_too(family_models):
    model, processor, forwards = family_models("qwen3_vl")
    input_ids, mask, keep, video = _batch(processor, [make_video(4)])
    with torch.no_grad():
        features = forwards.video_features(model, video["pixel_values_videos"], video["video_grid_thw"])
        zeros = (torch.zeros_like(features[0]),)
        zeroed, _ = forwards.token_logps(model, input_ids, mask, keep, video, features=zeros)
        other = forwards.video_features(
            model, [p * 0 + 1 for p in video["pixel_values_videos"]], video["video_grid_thw"]
        )
        other_zeroed, _ = forwards.token_logps(model, input_ids, mask, keep, video, features=(other[0] * 0,))
    torch.testing.assert_close(zeroed, other_zeroed)  # no vision information left in any map


def test_unsupported_family_and_processor_without_video_are_refused(tmp_path):
    from transformers import Qwen2Config

    with pytest.raises(
        UserError, match=r"model type 'qwen2' has no videoktr adapter; supported families: .*qwen3_vl"
    ):
        family_of(Qwen2Config())
    from videoktr.models.families import check_video_processor

    with pytest.raises(UserError, match=r"has no video processor.*qwen3_5"):
        check_video_processor(object(), "ckpt")


def test_build_tiny_model_refuses_an_unknown_arch(tmp_path, capsys):
    from videoktr.cli import main

    assert main(["build-tiny-model", "--out", str(tmp_path / "m"), "--arch", "llava"]) == 2
    assert (
        "unknown model family 'llava'; valid: qwen2_5_vl, qwen2_vl, qwen3_5, qwen3_vl"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "m").exists()
