"""SFT warm start on Video-R1 SFT records (``process`` + answer), with transformers' ``Trainer``.

The collator builds each example with the real processor (``build_video_inputs``: real fps, ``mm_token_type_ids``),
appends the target ``process`` + ``<answer>`` tokens and the end-of-turn token, and trains on the target tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from videoktr.errors import UserError


@dataclass
class SFTOptions:
    """Options of the SFT warm start (everything else is a ``transformers.TrainingArguments`` field)."""

    template: str = field(default="video-r1", metadata={"help": "Prompt template (same as RL and eval)."})
    cache_examples: bool = field(
        default=True,
        metadata={"help": "Keep each processed example in memory (small datasets: decode + process once)."},
    )


def sft_target(record: dict) -> str:
    """The assistant text an SFT record teaches: its ``process`` followed by its ``solution``."""
    process, solution = record.get("process"), record.get("solution")
    if not process or not solution:
        raise UserError(f"SFT record {record.get('problem_id')}: needs non-empty 'process' and 'solution'")
    return f"{process.strip()}{solution.strip()}"


class SFTCollator:
    """Batches SFT records into right-padded model inputs with labels on the target tokens only."""

    def __init__(self, processor, root, sampling, template: str = "video-r1", cache_examples: bool = True):
        self.processor, self.root, self.sampling, self.template = processor, root, sampling, template
        self._cache: dict[int, dict] | None = {} if cache_examples else None
        tok = processor.tokenizer
        self.pad_id = tok.pad_token_id
        self.end_ids = tok("<|im_end|>", add_special_tokens=False)["input_ids"]

    def _video(self, record):
        from videoktr.data.video import decode_video
        from videoktr.training.data import resolve_video

        return decode_video(
            resolve_video(record, self.root), self.sampling, indices=record.get("frame_indices")
        )

    def example(self, record: dict) -> dict:
        """One training example; cached by the record's identity when ``cache_examples``."""
        if self._cache is None:
            return self._build(record)
        key = id(record)
        if key not in self._cache:
            self._cache[key] = self._build(record)
        return self._cache[key]

    def _build(self, record: dict) -> dict:
        from videoktr.data.prompts import build_question
        from videoktr.models.qwen2_5_vl import build_video_inputs

        prompt = build_video_inputs(
            self.processor,
            [build_question(record, self.template)],
            [self._video(record)],
            sampling=self.sampling,
        )
        keep = prompt["attention_mask"][0].bool()
        prompt_ids = prompt["input_ids"][0][keep]
        target = (
            self.processor.tokenizer(sft_target(record), add_special_tokens=False)["input_ids"] + self.end_ids
        )
        target = torch.tensor(target, dtype=prompt_ids.dtype)
        return {
            "input_ids": torch.cat([prompt_ids, target]),
            "labels": torch.cat([torch.full_like(prompt_ids, -100), target]),
            "mm_token_type_ids": torch.cat([prompt["mm_token_type_ids"][0][keep], torch.zeros_like(target)]),
            "pixel_values_videos": prompt["pixel_values_videos"],
            "video_grid_thw": prompt["video_grid_thw"],
            # Qwen2.5-VL only: Qwen3-VL / Qwen3.5 processors write the timestamps in the text instead
            **(
                {"second_per_grid_ts": torch.as_tensor(prompt["second_per_grid_ts"], dtype=torch.float32)}
                if "second_per_grid_ts" in prompt
                else {}
            ),
        }

    def __call__(self, records: list[dict]) -> dict:
        examples = [self.example(r) for r in records]
        length = max(e["input_ids"].numel() for e in examples)

        def right_pad(key, value):
            return torch.stack(
                [torch.nn.functional.pad(e[key], (0, length - e[key].numel()), value=value) for e in examples]
            )

        input_ids = right_pad("input_ids", self.pad_id)
        attention = torch.stack(
            [
                torch.nn.functional.pad(torch.ones_like(e["input_ids"]), (0, length - e["input_ids"].numel()))
                for e in examples
            ]
        )
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "labels": right_pad("labels", -100),
            "mm_token_type_ids": right_pad("mm_token_type_ids", 0),
            "pixel_values_videos": torch.cat([e["pixel_values_videos"] for e in examples]),
            "video_grid_thw": torch.cat([e["video_grid_thw"] for e in examples]),
            **(
                {"second_per_grid_ts": torch.cat([e["second_per_grid_ts"] for e in examples])}
                if "second_per_grid_ts" in examples[0]
                else {}
            ),
        }


class _Records(torch.utils.data.Dataset):
    def __init__(self, records):
        self.records = records

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]


def run_sft(
    model,
    processor,
    records,
    root,
    sampling,
    training_args,
    options: SFTOptions | None = None,
    before_train=None,
):
    """Fine-tune ``model`` on SFT ``records``; returns the transformers ``Trainer`` (its ``state.log_history``).

    ``before_train(trainer)`` may adjust the trainer (callbacks) before training starts.
    """
    from transformers import Trainer

    options = options or SFTOptions()
    for record in records:
        sft_target(record)  # every record must have a target: fail before training starts
    training_args.remove_unused_columns = False
    collator = SFTCollator(processor, root, sampling, options.template, options.cache_examples)
    trainer = Trainer(
        model=model, args=training_args, train_dataset=_Records(records), data_collator=collator
    )
    if before_train is not None:
        before_train(trainer)
    trainer.train()
    return trainer
