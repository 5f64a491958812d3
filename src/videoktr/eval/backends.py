"""Generation backends for the evaluation runner: transformers (default) and vLLM (optional).

Both decode each video with the run's ``VideoSamplingConfig`` (frames / fps / pixel budget) and chat-format the
question the way training does (video first, then text). Each returns the generated text per item.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from videoktr.errors import UserError
from videoktr.eval.generation import GenerationSettings


def frame_plan_key(path: str | Path) -> str:
    """The key of a video in a frame plan (video path -> chosen frame indices): the absolute, normalised path, as
    the evaluation runner builds it (``data.schema.resolve_media``), so that ``runs/x/videos/a.mp4``,
    ``./runs/x/videos/a.mp4`` and ``/abs/runs/x/videos/a.mp4`` are the same video."""
    return os.path.normpath(Path(path).absolute())


def planned_frames(plan: dict[str, list[int]] | None, path: str | Path) -> list[int] | None:
    """The frames ``plan`` chose for the video at ``path``; ``None`` when there is no plan (``sampling`` picks
    them). A plan without this video is refused: falling back to the sampling's frames would evaluate other
    frames than the selector chose, without a word."""
    if plan is None:
        return None
    key = frame_plan_key(path)
    if key in plan:  # a plan keyed by frame_plan_key already (HFBackend stores it so): one lookup
        return plan[key]
    keyed = {frame_plan_key(k): frames for k, frames in plan.items()}
    if key not in keyed:
        raise UserError(
            f"the frame selector chose no frames for video {path} (the plan covers {len(plan)} other videos); "
            "plan the frames of every evaluated record, with the same video root"
        )
    return keyed[key]


class HFBackend:
    """Batched ``model.generate`` with the real processor (left padding, video metadata, mm_token_type_ids)."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        sampling: Any,
        generation: GenerationSettings | None = None,
        frame_indices: dict[str, list[int]] | None = None,
    ):
        self.model, self.processor, self.sampling = model, processor, sampling
        self.generation = generation or GenerationSettings()
        self.frame_indices = frame_indices

    @property
    def frame_indices(self) -> dict[str, list[int]] | None:
        """Video path -> the frames a frame selector chose (videoktr.frames), keyed by :func:`frame_plan_key`;
        None: ``sampling`` picks them."""
        return self._frame_indices

    @frame_indices.setter
    def frame_indices(self, plan: dict[str, list[int]] | None) -> None:
        self._frame_indices = None if plan is None else {frame_plan_key(k): v for k, v in plan.items()}

    def _generate_kwargs(self) -> dict[str, Any]:
        """Every sampling parameter explicit, so neither ``generate``'s fallbacks (top_k 50) nor a checkpoint's
        ``generation_config.json`` (which may set top_k, repetition_penalty...) decide them."""
        g = self.generation
        common = {"max_new_tokens": g.max_new_tokens, "repetition_penalty": g.repetition_penalty}
        if g.temperature == 0:
            return {
                **common,
                "do_sample": False,
                "temperature": None,
                "top_p": None,
                "top_k": None,
                "min_p": None,
            }
        return {
            **common,
            "do_sample": True,
            "temperature": g.temperature,
            "top_p": g.top_p,
            "top_k": g.top_k,
            "min_p": g.min_p,
        }

    def generate(
        self, questions: Sequence[str], videos: Sequence[Path], indices: Sequence[int] | None = None
    ) -> list[str]:
        """questions, videos: one per item; ``indices``: their positions in the benchmark (sampling seeds the batch
        with ``seed + indices[0]``). Returns the decoded completions (special tokens removed)."""
        import torch

        from videoktr.data.video import decode_video
        from videoktr.models.qwen2_5_vl import build_video_inputs

        decoded = [
            decode_video(path, self.sampling, indices=planned_frames(self.frame_indices, path)) for path in videos
        ]
        inputs = build_video_inputs(self.processor, list(questions), decoded, sampling=self.sampling)
        inputs = inputs.to(self.model.device)
        kwargs = self._generate_kwargs()
        if kwargs["do_sample"]:
            torch.manual_seed(self.generation.seed + (indices[0] if indices else 0))
        with torch.no_grad():
            output = self.model.generate(**inputs, **kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)


class VLLMBackend:
    """vLLM generation (GPU). Requires ``pip install 'videoktr[vllm]'`` (vLLM 0.33.0); its requests are tested on
    CPU with a fake engine (tests/eval/test_backends.py), the backend has not run on a GPU here (docs/vllm.md).

    Frames are decoded here with the same sampling as the HF backend; each request is built by
    ``videoktr.vllm.payload.video_request`` (as the trainer's vLLM rollouts): the chat prompt's token ids with one
    video placeholder, the frames with their metadata, no resampling, the run's pixel budget.
    """

    def __init__(
        self, model_dir: str | Path, sampling: Any, generation: GenerationSettings | None = None, **llm_kwargs
    ):
        from transformers import AutoProcessor

        from videoktr.vllm.install import vllm_problem

        if problem := vllm_problem():
            raise UserError(f"the vllm backend cannot run: {problem}; or use --backend hf")
        import vllm

        self.sampling = sampling
        self.generation = generation or GenerationSettings()
        self.processor = AutoProcessor.from_pretrained(str(model_dir))
        self.llm = vllm.LLM(model=str(model_dir), limit_mm_per_prompt={"image": 0, "video": 1}, **llm_kwargs)
        self._vllm = vllm

    def _params(self, index: int):
        """vLLM sampling parameters of one item (its own seed: the same draw on resume)."""
        g = self.generation
        return self._vllm.SamplingParams(
            temperature=g.temperature,
            top_p=g.top_p if g.temperature > 0 else 1.0,
            top_k=g.top_k if g.top_k > 0 else -1,  # -1 = off in vLLM
            min_p=g.min_p or 0.0,
            repetition_penalty=g.repetition_penalty,
            seed=g.seed + index,
            max_tokens=g.max_new_tokens,
        )

    def _prompt_ids(self, question: str) -> list[int]:
        """The chat prompt (video first, then text, as training) tokenized alone: one video placeholder."""
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.processor.tokenizer(text)["input_ids"]

    def generate(
        self, questions: Sequence[str], videos: Sequence[Path], indices: Sequence[int] | None = None
    ) -> list[str]:
        from videoktr.data.video import decode_video
        from videoktr.vllm.payload import video_request

        requests = [
            video_request(
                self.processor, self._prompt_ids(question), decode_video(path, self.sampling), self.sampling
            )
            for question, path in zip(questions, videos, strict=True)
        ]
        indices = list(indices) if indices is not None else list(range(len(requests)))
        outputs = self.llm.generate(requests, sampling_params=[self._params(i) for i in indices])
        return [out.outputs[0].text for out in outputs]


BACKENDS = ("hf", "vllm")
