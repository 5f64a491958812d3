"""A data file's ``frame_indices`` (a frame selector's choice) reach every pass: rollout, KTR perturbations, T-GRPO."""

import json

import pytest
import torch

CHOSEN = [2, 3, 6, 7]  # of the 8-frame synthetic videos; video_frames=4 would otherwise take [0, 2, 5, 7]


@pytest.fixture()
def chosen_data(synthetic_data, tmp_path):
    records = json.loads(synthetic_data["train"].read_text())
    path = tmp_path / "train_frames.json"
    path.write_text(json.dumps([{**r, "frame_indices": CHOSEN} for r in records]))
    return {"train": str(path), "root": str(synthetic_data["root"])}


def _record_decodes(monkeypatch):
    import videoktr.data.video as video

    calls = []
    original = video.decode_video

    def spy(path, cfg, indices=None):
        out = original(path, cfg, indices=indices)
        calls.append(out.frame_indices)
        return out

    monkeypatch.setattr(video, "decode_video", spy)
    return calls


def test_rollout_decodes_the_chosen_frames(make_trainer, chosen_data, monkeypatch):
    from videoktr.data.video import decode_video
    from videoktr.models.qwen2_5_vl import build_video_inputs
    from videoktr.training.rollout import prompt_text

    trainer = make_trainer(data=chosen_data, method="grpo")
    assert trainer.train_dataset[0]["prompt"][0]["content"][0]["frame_indices"] == CHOSEN
    prompts = [trainer.train_dataset[i]["prompt"] for i in range(2)]
    _, _, fields = trainer._tokenize_prompts(prompts)
    videos = trainer._rollout_video["videos"]
    assert [v.frame_indices for v in videos] == [CHOSEN, CHOSEN]
    path = prompts[0][0]["content"][0]["video"]
    expected = build_video_inputs(
        trainer.processing_class, [prompt_text(prompts[0])], [decode_video(path, trainer.sampling, CHOSEN)],
        sampling=trainer.sampling,
    )  # fmt: skip
    rows = int(expected["video_grid_thw"].prod())
    torch.testing.assert_close(fields["pixel_values_videos"][:rows], expected["pixel_values_videos"])
    torch.testing.assert_close(
        fields["second_per_grid_ts"][:1], torch.as_tensor(expected["second_per_grid_ts"])
    )


@pytest.mark.parametrize(
    "fields",
    [dict(method="ktr", ktr_temporal_level="frame"), dict(method="t_grpo")],
    ids=["ktr-frame", "t_grpo"],
)
def test_training_step_uses_only_the_chosen_frames(make_trainer, chosen_data, monkeypatch, fields):
    calls = _record_decodes(monkeypatch)
    trainer = make_trainer(data=chosen_data, max_steps=1, **fields)
    trainer.train()
    assert calls and all(indices == CHOSEN for indices in calls)
