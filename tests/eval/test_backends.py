"""The vLLM eval backend sends the requests of ``videoktr.vllm.payload`` (the trainer's), here to a fake engine."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from videoktr.data.video import VideoSamplingConfig, decode_video
from videoktr.errors import UserError
from videoktr.eval.backends import VLLMBackend
from videoktr.vllm import install


class FakeLLM:
    def __init__(self, model, **kwargs):
        self.kwargs, self.requests = kwargs, []

    def generate(self, requests, sampling_params=None):
        self.requests.extend(requests)
        return [SimpleNamespace(outputs=[SimpleNamespace(text=f"answer {k}")]) for k in range(len(requests))]


@pytest.fixture
def fake_vllm(monkeypatch):
    monkeypatch.setattr(install, "vllm_problem", lambda: None)
    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=FakeLLM, SamplingParams=SimpleNamespace))


def test_vllm_backend_sends_the_trainers_video_request(fake_vllm, tiny_model_dir, tiny_bench):
    from videoktr.models.qwen2_5_vl import build_video_inputs
    from videoktr.vllm.payload import video_request

    _, root = tiny_bench
    sampling = VideoSamplingConfig(num_frames=4, max_pixels=3136)
    backend = VLLMBackend(tiny_model_dir, sampling)
    path = root / "videos" / "v1.mp4"
    assert backend.generate(["What color is the square?"], [path]) == ["answer 0"]
    assert backend.llm.kwargs["limit_mm_per_prompt"] == {"image": 0, "video": 1}
    (sent,) = backend.llm.requests
    video = decode_video(path, sampling)
    trainer = build_video_inputs(backend.processor, ["What color is the square?"], [video], sampling=sampling)
    expected = video_request(backend.processor, trainer["input_ids"][0].tolist(), video, sampling)
    assert sent["prompt_token_ids"] == expected["prompt_token_ids"]
    assert np.array_equal(sent["multi_modal_data"]["video"][0], expected["multi_modal_data"]["video"][0])
    assert sent["multi_modal_data"]["video"][1] == expected["multi_modal_data"]["video"][1]
    assert (
        sent["mm_processor_kwargs"] == expected["mm_processor_kwargs"]
        and "size" in sent["mm_processor_kwargs"]
    )


def test_vllm_backend_without_vllm_names_the_pip_command(tiny_model_dir):
    with pytest.raises(
        UserError,
        match=r"vllm backend cannot run: vLLM is not installed.*pip install 'videoktr\[vllm\]'.*--backend hf",
    ):
        VLLMBackend(tiny_model_dir, VideoSamplingConfig(num_frames=4))
