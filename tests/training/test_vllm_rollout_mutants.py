"""``training/vllm_rollout.py`` without vLLM: the engine class patched while TRL builds it, the sampling kwargs, the
engine wrapper that swaps queued video requests in, and the mixin that queues them. Written to kill the mutants of
``scripts/mutation.sh training/rollout`` (docs/testing.md); milliseconds per test. The whole path through TRL's
colocate generation with a fake engine: tests/training/test_vllm_rollout.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import videoktr.vllm.payload as payload
from videoktr.training import vllm_rollout
from videoktr.training.vllm_rollout import (
    SUPPRESS_BIAS,
    VideoLLM,
    VLLMVideoMixin,
    video_engine,
    vllm_generation_kwargs,
)

from .hosts import HostBase, make_config


def test_video_engine_patches_the_engine_class_only_while_trl_builds_it(monkeypatch):
    from trl.generation import vllm_generation

    made = []

    def engine(**kwargs):
        made.append(kwargs)
        return "engine"

    monkeypatch.setattr(vllm_generation, "LLM", engine, raising=False)
    with video_engine(False):
        assert vllm_generation.LLM is engine
    with video_engine(True):
        assert vllm_generation.LLM(model="m") == "engine"
    assert made == [{"model": "m", "limit_mm_per_prompt": {"image": 0, "video": 1}}]
    assert vllm_generation.LLM is engine
    with pytest.raises(ValueError, match="build failed"), video_engine(True):
        raise ValueError("build failed")
    assert vllm_generation.LLM is engine  # restored after a failure too


def test_limit_is_a_fresh_dict_per_engine(monkeypatch):
    from trl.generation import vllm_generation

    monkeypatch.setattr(vllm_generation, "LLM", lambda **kw: kw, raising=False)
    with video_engine(True):
        first = vllm_generation.LLM()
    first["limit_mm_per_prompt"]["video"] = 5
    assert vllm_rollout.LIMIT_MM_PER_PROMPT == {"image": 0, "video": 1}


def test_suppressed_tokens_become_a_logit_bias():
    kwargs = vllm_generation_kwargs({"suppress_tokens": [5, 3], "logit_bias": {9: 2.0}, "top_k": 4}, [3, 7])
    assert kwargs == {
        "top_k": 4,
        "logit_bias": {9: 2.0, 3: SUPPRESS_BIAS, 5: SUPPRESS_BIAS, 7: SUPPRESS_BIAS},
    }
    assert SUPPRESS_BIAS == -100.0
    assert vllm_generation_kwargs(None, []) == {}
    assert vllm_generation_kwargs({"suppress_tokens": None, "logit_bias": None}, [2]) == {
        "logit_bias": {2: -100.0}
    }
    given = {"suppress_tokens": [1]}
    vllm_generation_kwargs(given, [])
    assert given == {"suppress_tokens": [1]}  # the caller's dict is not changed
    assert all(type(k) is int for k in vllm_generation_kwargs({}, [torch.tensor(4).item()])["logit_bias"])


class Engine:
    def __init__(self):
        self.calls, self.sleeping = [], False

    def generate(self, prompts, *args, **kwargs):
        self.calls.append((prompts, args, kwargs))
        return "outputs"

    def sleep(self):
        self.sleeping = True


def test_video_llm_swaps_queued_requests_in_once():
    engine = Engine()
    llm = VideoLLM(engine)
    first = [{"prompt_token_ids": [8]}]
    llm.generate(first)  # nothing queued yet: TRL's rows as they are
    assert engine.calls[0][0] is first
    llm.sleep()  # everything but generate is the engine's own
    assert engine.sleeping
    rows = [{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": (3,)}]
    llm.queue([torch.tensor([1, 2]).tolist(), [3]], ["req0", "req1"])
    assert llm.generate(rows, "params", use_tqdm=False) == "outputs"
    assert engine.calls[1] == (["req0", "req1"], ("params",), {"use_tqdm": False})
    llm.generate(rows)  # nothing queued any more
    assert engine.calls[-1][0] is rows


def test_video_llm_refuses_rows_it_has_no_request_for():
    llm = VideoLLM(Engine())
    llm.queue([[1, 2]], ["req"])
    with pytest.raises(RuntimeError, match=r"^2 vLLM rows for 1 queued video requests$"):
        llm.generate([{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [1, 2]}])
    llm.queue([[1, 2], [4]], ["a", "b"])
    with pytest.raises(RuntimeError, match=r"^vLLM row 1 is not the prompt its video request was built for$"):
        llm.generate([{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [5]}])
    with pytest.raises(ValueError):
        llm.queue([[1]], ["a", "b"])  # one request per row


class Host(VLLMVideoMixin, HostBase):
    pass


def host(tmp_path, use_vllm=True):
    h = Host(make_config(tmp_path))
    h.use_vllm = use_vllm
    h.vllm_generation = SimpleNamespace(llm=Engine())
    h.processing_class, h.sampling = "processor", "sampling"
    h.model = SimpleNamespace(
        training=True, config=SimpleNamespace(vision_config=SimpleNamespace(tokens_per_second=2))
    )
    h._rollout_video = {
        "videos": ["clip0", "clip1"],
        "video_grid_thw": torch.tensor([[2, 4, 4], [4, 4, 4]]),
        "second_per_grid_ts": torch.tensor([0.5, 1.0]),
    }
    return h


def test_wrap_only_with_vllm_and_once(tmp_path):
    h = host(tmp_path)
    engine = h.vllm_generation.llm
    h._wrap_vllm_engine()
    wrapped = h.vllm_generation.llm
    assert isinstance(wrapped, VideoLLM) and wrapped._llm is engine
    h._wrap_vllm_engine()
    assert h.vllm_generation.llm is wrapped
    h = host(tmp_path, use_vllm=False)
    h._wrap_vllm_engine()
    assert isinstance(h.vllm_generation.llm, Engine)


@pytest.fixture
def requests(monkeypatch):
    made, checked = [], []

    def request(processor, ids, decoded, sampling, frames=None):
        made.append((processor, ids, decoded, sampling, frames))
        return f"request{len(made) - 1}"

    def agree(grid, seconds, tokens_per_second, processor, dtype):
        checked.append((grid, seconds, tokens_per_second, processor, dtype))
        return grid[0] == 2  # the second video's positions differ

    monkeypatch.setattr(vllm_rollout, "video_request", request)
    monkeypatch.setattr(payload, "positions_agree", agree)
    return SimpleNamespace(made=made, checked=checked)


def test_rollout_rows_are_queued_with_their_videos(tmp_path, requests):
    h = host(tmp_path)
    h._wrap_vllm_engine()
    h._queue_vllm_videos([[1], [2]])
    assert requests.made == [
        ("processor", [1], "clip0", "sampling", None),
        ("processor", [2], "clip1", "sampling", None),
    ]
    assert h.vllm_generation.llm._queued == [([1], "request0"), ([2], "request1")]
    assert requests.checked == [
        ([2, 4, 4], 0.5, 2, "processor", torch.bfloat16),
        ([4, 4, 4], 1.0, 2, "processor", torch.bfloat16),
    ]
    assert h._metrics["train"]["vllm/positions_differ"] == [0.5]


def test_t_grpo_rows_are_queued_with_their_shuffled_frames(tmp_path, requests):
    h = host(tmp_path)
    h._wrap_vllm_engine()
    h.model.training = False
    h._vllm_videos = [("clipA", "framesA", 1), ("clipA", "framesA", 1), ("clipB", None, 0)]
    h._queue_vllm_videos([[5], [5], [6]])
    assert [(m[2], m[4]) for m in requests.made] == [
        ("clipA", "framesA"),
        ("clipA", "framesA"),
        ("clipB", None),
    ]
    assert h._vllm_videos is None  # used once
    assert [c[0] for c in requests.checked] == [[4, 4, 4], [4, 4, 4], [2, 4, 4]]  # each row's rollout video
    assert h._metrics["eval"]["vllm/positions_differ"] == [pytest.approx(2 / 3)]


def test_a_generation_without_videos_is_an_error(tmp_path, requests):
    h = host(tmp_path)
    h._rollout_video = None
    with pytest.raises(RuntimeError, match=r"^use_vllm: a generation call without video prompts \(vLLM rollouts need "
                                           r"videos\)$"):  # fmt: skip
        h._queue_vllm_videos([[1]])


def test_positions_are_not_checked_without_tokens_per_second(tmp_path, requests):
    h = host(tmp_path)
    h._wrap_vllm_engine()
    h.model.config = SimpleNamespace()  # no vision_config
    h._queue_vllm_videos([[1], [2]])
    assert not requests.checked and not h._metrics["train"]
    h._log_vllm_positions([], [])
    assert not h._metrics["train"]
