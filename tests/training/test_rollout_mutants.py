"""``RolloutVideoMixin`` (training/rollout.py) on a host whose TRL methods are stand-ins: which prompts go to our
video path, what is decoded (once per generation batch) and carried per row, the group index of every row, the
generation pass recorded once, and the frame-level shuffle. Written to kill the mutants of
``scripts/mutation.sh training/rollout`` (docs/testing.md); milliseconds per test. The real processor and decoder
on the synthetic videos: tests/training/test_plumbing.py, test_frame_indices.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import videoktr.data.video as video_module
import videoktr.models.qwen2_5_vl as qwen
from videoktr.errors import UserError
from videoktr.training.rollout import (
    RolloutVideoMixin,
    prompt_text,
    prompt_video_frames,
    prompt_video_path,
)
from videoktr.training.trainer import KTRTrainer

from .hosts import HostBase, make_config


def video_prompt(path, text="what?", frames=None):
    part = {"type": "video", "video": path}
    if frames is not None:
        part["frame_indices"] = frames
    return [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "Q: "}, part, {"type": "text", "text": text}]},
    ]


# --------------------------------------------------------------------------------------------- prompt parts
def test_prompt_parts():
    prompt = video_prompt("a.mp4", frames=[3, "5"])
    assert prompt_video_path(prompt) == "a.mp4" and prompt_video_frames(prompt) == [3, 5]
    assert prompt_text(prompt) == "Q: what?"
    text_only = [{"role": "user", "content": "plain"}]
    assert prompt_video_path(text_only) is None and prompt_video_frames(text_only) is None
    assert prompt_text(text_only) == "plain"
    assert prompt_video_frames(video_prompt("a.mp4")) is None
    image = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": None}, {"type": "text", "text": "x"}],
        }
    ]
    assert prompt_video_path(image) is None and prompt_text(image) == "x"
    # the last message's text only; a video part in an earlier message still counts as the prompt's video
    two = [
        {"role": "user", "content": [{"type": "video", "video": "b.mp4"}]},
        {"role": "user", "content": "again"},
    ]
    assert prompt_video_path(two) == "b.mp4" and prompt_text(two) == "again"


# ------------------------------------------------------------------------------------------------ the host
class TRLBase:
    """GRPOTrainer stand-ins for the methods the mixin extends."""

    def _tokenize_prompts(self, prompts):
        self.trl_calls.append(("tokenize", prompts))
        return "trl-ids", "trl-images", "trl-fields"

    def _generate_single_turn(self, prompt_ids, images, fields, num_generations, has_tool_images=False):
        self.trl_calls.append(("generate", prompt_ids, images, fields, num_generations, has_tool_images))
        model, completions = self.model, [[1, 2], [2]][: len(prompt_ids)]
        if hasattr(
            model, "get_base_model"
        ):  # PEFT: generate() runs the base model's forwards, not PeftModel's
            model = model.get_base_model()
        ids = torch.tensor(prompt_ids)
        for step in range(
            2
        ):  # a prefill and one more step, through the (hooked) model, fed the sampled tokens
            model(input_ids=ids)
            fed = [c[step] if step < len(c) else 0 for c in completions]
            ids = torch.cat([ids, torch.tensor(fed).unsqueeze(1)], dim=1)
        return completions, "trl-logprobs"

    def _generate_and_score_completions(self, inputs):
        self.trl_calls.append(("rollout", inputs, self._decoded_videos, self._record_generation))
        self._rollout_video = self.next_video
        if self._record_generation:
            self._generation_scores = (torch.ones(len(inputs), 2), torch.full((len(inputs), 2), 2.0))
        return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in self.next_output.items()}


class Model(torch.nn.Module):
    """Logits (N, L, 3) = the input ids' last value times (1, 2, 3)."""

    def forward(self, input_ids):
        logits = input_ids[:, -1:, None].float() * torch.tensor([1.0, 2.0, 3.0])
        return SimpleNamespace(logits=logits)


class Host(RolloutVideoMixin, TRLBase, HostBase):
    _batch_video = KTRTrainer._batch_video

    def __init__(self, args, **kw):
        super().__init__(args, **kw)
        self.trl_calls, self.attached, self.queued = [], [], []
        self.model = Model()
        self.model.train()
        self.tools = None
        self.use_vllm = False
        self.sampling = "sampling-config"
        self.processing_class = Processor()
        self._rollout_video, self._record_generation, self._generation_scores = None, False, None

    def _attach_selection(self, output, video):
        self.attached.append((output, video, list(self._rollout_problem_ids)))

    def _queue_vllm_videos(self, prompt_ids):
        self.queued.append(prompt_ids)


def host(tmp_path, **fields):
    return Host(make_config(tmp_path, **fields))


class Decoded(SimpleNamespace):
    pass


@pytest.fixture
def fake_video_io(monkeypatch):
    """decode_video / build_video_inputs stand-ins: each decode is recorded; video k of a batch has 2 frames,
    grid (1, 1, k + 1) -> k + 1 pixel rows of value k."""
    decoded = []

    def decode(path, cfg, indices=None):
        decoded.append((path, cfg, indices))
        return Decoded(path=path, indices=indices, sample_fps=4.0, frames=torch.zeros(4, 1, 1, 1))

    def build(processor, texts, videos, sampling):
        assert processor == "the processor"
        n = len(texts)
        built.append((texts, videos, sampling))
        grid = torch.tensor([[1, 1, k + 1] for k in range(n)])
        pixels = torch.cat([torch.full((k + 1, 2), float(k)) for k in range(n)])
        out = {
            "input_ids": torch.tensor([[0, 10 + k, 20 + k] for k in range(n)]),
            "attention_mask": torch.tensor([[0, 1, 1]] * n),  # left padding
            "mm_token_type_ids": torch.tensor([[0, 0, 2]] * n),
            "video_grid_thw": grid,
            "pixel_values_videos": pixels,
        }
        if with_seconds:  # as a float64 tensor: the trainer carries float32
            out["second_per_grid_ts"] = torch.tensor([0.25 * (k + 1) for k in range(n)], dtype=torch.float64)
        return out

    built, with_seconds = [], []
    monkeypatch.setattr(video_module, "decode_video", decode)
    monkeypatch.setattr(qwen, "build_video_inputs", build)
    return SimpleNamespace(decoded=decoded, built=built, with_seconds=with_seconds)


# ---------------------------------------------------------------------------------------------- tokenizing
def test_text_prompts_go_to_trl(tmp_path):
    h = host(tmp_path)
    h._rollout_video = "stale"
    assert h._tokenize_prompts([[{"role": "user", "content": "hi"}]]) == (
        "trl-ids",
        "trl-images",
        "trl-fields",
    )
    assert h._rollout_video is None and h.trl_calls[0] == ("tokenize", [[{"role": "user", "content": "hi"}]])
    assert h._tokenize_prompts(["plain string"]) == ("trl-ids", "trl-images", "trl-fields")


def test_mixed_batches_are_refused(tmp_path):
    with pytest.raises(
        UserError,
        match="a batch mixes video and non-video prompts, which KTRTrainer cannot train in one"
        " forward yet; train the video and the image/text records in separate runs",
    ):
        host(tmp_path)._tokenize_prompts([video_prompt("a.mp4"), [{"role": "user", "content": "hi"}]])


def test_video_prompts_are_decoded_once_and_carried_per_row(tmp_path, fake_video_io):
    h = host(tmp_path)
    prompts = [
        video_prompt("a.mp4", "one"),
        video_prompt("a.mp4", "one"),
        video_prompt("b.mp4", "two", [0, 2]),
    ]
    prompt_ids, images, fields = h._tokenize_prompts(prompts)
    # a.mp4 decoded once for its 2 rows; b.mp4 with its chosen frames
    assert fake_video_io.decoded == [("a.mp4", "sampling-config", None), ("b.mp4", "sampling-config", [0, 2])]
    texts, videos, sampling = fake_video_io.built[0]
    assert texts == ["Q: one", "Q: one", "Q: two"] and sampling == "sampling-config"
    assert videos[0] is videos[1] and videos[2].indices == [0, 2]
    # left padding removed from the ids and the mm types
    assert prompt_ids == [[10, 20], [11, 21], [12, 22]] and images is None
    assert fields["mm_token_type_ids"] == [[0, 2]] * 3 and "second_per_grid_ts" not in fields
    assert torch.equal(fields["video_grid_thw"], torch.tensor([[1, 1, 1], [1, 1, 2], [1, 1, 3]]))
    assert fields["pixel_values_videos"].shape == (6, 2)
    video = h._rollout_video
    assert [p.tolist() for p in video["pixel_values_videos"]] == [
        [[0.0, 0.0]],
        [[1.0, 1.0]] * 2,
        [[2.0, 2.0]] * 3,
    ]
    # no second_per_grid_ts from the processor: temporal patch 2 / sample fps 4 = 0.5 s per grid step
    assert (
        video["second_per_grid_ts"].tolist() == [0.5] * 3
        and video["second_per_grid_ts"].dtype == torch.float32
    )
    assert video["videos"] == videos and video["videos"][0] is video["videos"][1]
    assert torch.equal(video["video_grid_thw"], fields["video_grid_thw"])
    # a second tokenization in the same generation batch (T-GRPO's shuffled rollouts) decodes nothing again
    assert set(h._decoded_videos) == {("a.mp4", ()), ("b.mp4", (0, 2))}
    h._tokenize_prompts(prompts[:1])
    assert len(fake_video_io.decoded) == 2


def test_the_processors_seconds_are_carried_and_given_to_the_model(tmp_path, fake_video_io):
    fake_video_io.with_seconds.append(True)
    h = host(tmp_path)
    _, _, fields = h._tokenize_prompts([video_prompt("a.mp4"), video_prompt("b.mp4")])
    assert h._rollout_video["second_per_grid_ts"].tolist() == [0.25, 0.5]
    assert h._rollout_video["second_per_grid_ts"].dtype == torch.float32
    assert fields["second_per_grid_ts"] is h._rollout_video["second_per_grid_ts"]


# ---------------------------------------------------------------------------------------------- generation
def test_generation_is_recorded_once(tmp_path):
    h = host(tmp_path, temperature=0.5)
    h._record_generation = True
    ids, logprobs = h._generate_single_turn([[1, 3], [2, 3]], "images", "fields", 2, has_tool_images=True)
    assert ids == [[1, 2], [2]] and logprobs == "trl-logprobs"
    assert h.trl_calls == [("generate", [[1, 3], [2, 3]], "images", "fields", 2, True)]
    logps, entropy = h._generation_scores

    # step 0: logits 3 * (1, 2, 3) / 0.5 = (6, 12, 18) for both rows (last prompt id 3); row 0 sampled 1, row 1
    # sampled 2. Step 1: row 0 (fed 1) 1 * (1, 2, 3) / 0.5 = (2, 4, 6), sampled 2; row 1 (fed 2) (4, 8, 12), past
    # its end: token 0.
    def lsm(z, k):
        return z[k] - torch.logsumexp(torch.tensor(z), 0).item()

    assert logps[0].tolist() == pytest.approx([lsm([6, 12, 18], 1), lsm([2, 4, 6], 2)], abs=1e-5)
    assert logps[1].tolist() == pytest.approx([lsm([6, 12, 18], 2), lsm([4, 8, 12], 0)], abs=1e-5)
    assert entropy.shape == (2, 2)
    assert h._record_generation is False and not h.model._forward_hooks  # the hook is removed
    h._generate_single_turn(
        [[1, 3]], "imgs", "fields2", 1, has_tool_images=True
    )  # the next call is TRL's own
    assert h.trl_calls[-1] == ("generate", [[1, 3]], "imgs", "fields2", 1, True)
    assert h._generation_scores is not None and not h.model._forward_hooks


def test_the_hook_is_removed_when_generation_fails(tmp_path):
    h = host(tmp_path)
    h._record_generation = True

    def boom(*a, **k):
        raise ValueError("generation failed")

    h.model.forward = boom
    with pytest.raises(ValueError, match="generation failed"):
        h._generate_single_turn([[1]], None, "fields", 1)
    assert not h.model._forward_hooks


def test_vllm_rows_are_queued_first(tmp_path):
    h = host(tmp_path)
    h.use_vllm = True
    h._generate_single_turn([[1, 3]], None, "fields", 1)
    assert h.queued == [[[1, 3]]] and h._generation_scores is None
    assert h.trl_calls == [
        ("generate", [[1, 3]], None, "fields", 1, False)
    ]  # no tool images unless TRL says so


# -------------------------------------------------------------------------------------------------- rollout
def rollout_output(n=4):
    return {
        "completion_ids": torch.zeros(n, 3, dtype=torch.long),
        "completion_mask": torch.ones(n, 3, dtype=torch.long),
    }


def rollout_video(n=4):
    return {
        "pixel_values_videos": [torch.full((2, 2), float(k)) for k in range(n)],
        "video_grid_thw": torch.tensor([[1, 1, 2]] * n),
        "second_per_grid_ts": torch.tensor([0.5] * n),
        "videos": [f"clip{k // 2}" for k in range(n)],
    }


@pytest.mark.parametrize(
    "fields, record",
    [
        ({}, True),
        ({"ktr_full_logps": "forward"}, False),
        ({"method": "grpo"}, False),
        ({"method": "entropy"}, True),
    ],
)
def test_rollout_records_the_generation_only_when_it_is_used(tmp_path, fields, record):
    h = host(tmp_path, **fields)
    h.next_output, h.next_video = rollout_output(), rollout_video()
    inputs = [{"problem_id": f"p{k // 2}"} for k in range(4)]
    output = h._generate_and_score_completions(inputs)
    assert ("_generation_logps" in output) is record and ("_generation_entropy" in output) is record
    if record:  # widened to the completion width: 2 recorded steps, 3 positions
        assert output["_generation_logps"].tolist() == [[1.0, 1.0, 0.0]] * 4
        assert output["_generation_entropy"].tolist() == [[2.0, 2.0, 0.0]] * 4
    assert h._record_generation is False and h._generation_scores is None and h._rollout_video is None
    assert h._decoded_videos == {} and h._rollout_problem_ids is None


def test_rollout_with_tools_does_not_record(tmp_path):
    h = host(tmp_path)
    h.tools = ["a tool"]
    h.next_output, h.next_video = rollout_output(), None
    assert "_generation_logps" not in h._generate_and_score_completions([{}] * 4)


def test_rollout_attaches_group_ids_video_rows_and_problem_ids(tmp_path):
    # rank 1 of 2 with 4 local rows, G = 2: global rows 4..7 -> groups 2, 2, 3, 3
    h = host(tmp_path)
    h.accelerator.process_index = 1
    video = rollout_video()
    h.next_output, h.next_video = rollout_output(), video
    inputs = [{"problem_id": f"p{k // 2}"} for k in range(4)]
    output = h._generate_and_score_completions(inputs)
    assert output["group_ids"].tolist() == [2, 2, 3, 3]
    assert output["pixel_values_videos"] == video["pixel_values_videos"] or all(
        torch.equal(a, b) for a, b in zip(output["pixel_values_videos"], video["pixel_values_videos"])
    )
    assert torch.equal(output["video_grid_thw"], video["video_grid_thw"])
    assert torch.equal(output["second_per_grid_ts"], video["second_per_grid_ts"])
    assert "pixel_values_videos_shuffled" not in output
    (attached, rows_video, problem_ids) = h.attached[0]
    assert attached is output and problem_ids == ["p0", "p0", "p1", "p1"]
    assert set(rows_video) == {"pixel_values_videos", "video_grid_thw", "second_per_grid_ts"}
    assert h._rollout_problem_ids is None


def test_rollout_without_video_and_in_eval(tmp_path):
    h = host(tmp_path)
    h.model.eval()  # G_eval = 3 groups the rows
    h.next_output, h.next_video = rollout_output(6), None
    output = h._generate_and_score_completions([{}] * 6)
    assert output["group_ids"].tolist() == [0, 0, 0, 1, 1, 1]
    assert "pixel_values_videos" not in output and h.attached[0][1] is None
    assert h.attached[0][2] == [None] * 6


def test_the_rollout_state_is_cleared_when_trl_fails(tmp_path):
    h = host(tmp_path)
    h._decoded_videos = {"k": 1}

    def boom(inputs):
        h._rollout_video = "v"
        raise ValueError("rollout failed")

    TRLBase_generate = TRLBase._generate_and_score_completions
    try:
        TRLBase._generate_and_score_completions = lambda self, inputs: boom(inputs)
        with pytest.raises(ValueError, match="rollout failed"):
            h._generate_and_score_completions([{}])
    finally:
        TRLBase._generate_and_score_completions = TRLBase_generate
    assert h._rollout_video is None and h._decoded_videos == {} and not h._record_generation


def test_the_selection_failing_still_clears_the_problem_ids(tmp_path):
    h = host(tmp_path)
    h.next_output, h.next_video = rollout_output(), None

    def boom(output, video):
        raise ValueError("selection failed")

    h._attach_selection = boom
    with pytest.raises(ValueError, match="selection failed"):
        h._generate_and_score_completions([{}] * 4)
    assert h._rollout_problem_ids is None


def test_frame_level_shuffle_reencodes_each_distinct_video_once(tmp_path, monkeypatch):
    # ktr with ktr_temporal_level frame: rows 0, 1 share clip A (4 frames), rows 2, 3 clip B (3 frames); one
    # derangement per distinct clip, re-encoded by the processor once, carried by every row of that clip
    calls = []

    def reencode(processor, videos, perms, sampling):
        calls.append((processor, videos, perms, sampling))
        return {"pixel_values_videos": torch.full((2, 2), float(videos[0].frames.shape[0]))}

    monkeypatch.setattr(qwen, "reencode_with_frame_permutation", reencode)
    h = host(tmp_path, ktr_temporal_level="frame")
    a, b = Decoded(frames=torch.zeros(4, 1, 1, 1)), Decoded(frames=torch.zeros(3, 1, 1, 1))
    h.next_output, h.next_video = rollout_output(), {**rollout_video(), "videos": [a, a, b, b]}
    output = h._generate_and_score_completions([{}] * 4)
    assert [c[1][0] for c in calls] == [a, b] and all(c[0] is h.processing_class for c in calls)
    assert all(c[3] == "sampling-config" for c in calls)
    (perm_a,), (perm_b,) = calls[0][2], calls[1][2]
    assert sorted(perm_a.tolist()) == [0, 1, 2, 3] and perm_a.tolist() != [0, 1, 2, 3]
    assert sorted(perm_b.tolist()) == [0, 1, 2] and perm_b.tolist() != [0, 1, 2]
    assert [p[0, 0].item() for p in output["pixel_values_videos_shuffled"]] == [4.0, 4.0, 3.0, 3.0]
    assert "pixel_values_videos_shuffled" in h.attached[0][1]


def test_frame_level_shuffle_only_for_ktr(tmp_path, monkeypatch):
    monkeypatch.setattr(qwen, "reencode_with_frame_permutation", lambda *a: pytest.fail("re-encoded"))
    h = host(tmp_path, method="entropy", ktr_temporal_level="frame")
    h.next_output, h.next_video = rollout_output(), rollout_video()
    assert "pixel_values_videos_shuffled" not in h._generate_and_score_completions([{}] * 4)


class Processor:
    def __eq__(self, other):
        return other == "the processor"

    video_processor = SimpleNamespace(temporal_patch_size=2)


def test_the_rollout_starts_with_a_fresh_decode_cache_and_its_recording_flag(tmp_path):
    h = host(tmp_path)
    h._decoded_videos = {"stale": 1}
    h.next_output, h.next_video = rollout_output(), None
    h._generate_and_score_completions([{}] * 4)
    _, _, cache, record = h.trl_calls[0]
    assert cache == {} and record is True


def test_generation_of_a_peft_model_is_recorded_on_its_base_model(tmp_path):
    from peft import LoraConfig, get_peft_model

    class Base(Model):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(1, 1)

    h = host(tmp_path)
    h.model = get_peft_model(Base(), LoraConfig(target_modules=["proj"], r=1))
    h._record_generation = True
    h._generate_single_turn([[1, 3], [2, 3]], None, "fields", 2)
    logps, _ = h._generation_scores
    assert logps.shape == (2, 2)


def test_frame_level_permutations_come_from_the_trainers_generator(tmp_path, monkeypatch):
    from videoktr.core.perturbations import random_derangement_like

    perms = []
    monkeypatch.setattr(qwen, "reencode_with_frame_permutation",
                        lambda p, videos, ps, s: perms.append(ps[0]) or {"pixel_values_videos": torch.zeros(1)})  # fmt: skip
    h = host(tmp_path, ktr_temporal_level="frame")
    h._ktr_generator.manual_seed(11)
    clip = Decoded(frames=torch.zeros(6, 1, 1, 1))
    h.next_output, h.next_video = rollout_output(), {**rollout_video(), "videos": [clip] * 4}
    h._generate_and_score_completions([{}] * 4)
    assert torch.equal(perms[0], random_derangement_like(6, torch.Generator().manual_seed(11)))
