"""Turn Video-R1 records into the rows the trainers read.

RL rows are TRL conversational prompts whose user message holds ``{"type": "video", "video": <abs path>}`` and the
question text built by the shared template (``videoktr.data.prompts``), plus the reward columns (``solution``,
``problem_type``, ``problem_id``, ``options``...). Every video is probed here from its container's metadata (no frame
is decoded: startup cost does not grow with video length): a video that is missing, unreadable, without frames or too
short for the sampling is skipped and counted, with its path and reason, never replaced by another sample.
(``videoktr validate-data`` decodes every file, for damage further in.)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from videoktr.data.schema import resolve_media
from videoktr.errors import UserError

logger = logging.getLogger(__name__)

REWARD_COLUMNS = ("problem_id", "problem_type", "solution", "options", "data_type", "family", "question_kind")


@dataclass
class PreparedData:
    """Rows ready for a trainer and the records that were left out (with why)."""

    rows: list[dict]
    skipped: list[dict] = field(default_factory=list)

    def write_skipped(self, path: str | Path) -> None:
        with open(path, "w") as f:
            for item in self.skipped:
                f.write(json.dumps(item) + "\n")


def resolve_video(record: dict, root: str | Path) -> Path:
    """The record's video: its path under ``root`` (absolute paths kept; whether it may leave the root is
    decided by the record check before this)."""
    return resolve_media(Path(root), record["path"], allow_outside_root=True)[0]


def prepare_rl_rows(
    records: list[dict], root: str | Path, sampling, template: str, check_videos: bool = True
):
    """Records -> :class:`PreparedData` of conversational RL rows (videos checked from their metadata)."""
    from videoktr.data.prompts import build_question
    from videoktr.data.video import VideoDecodeError, check_frame_indices, probe_video

    # every row carries the same columns (None where a record has no such field): the first record must not decide
    # the dataset's columns for all
    columns = [k for k in REWARD_COLUMNS if any(isinstance(r, dict) and k in r for r in records)]
    rows, skipped = [], []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise UserError(f"record #{index}: expected a JSON object, got {type(record).__name__}")
        if record.get("data_type", "video") != "video":
            raise UserError(
                f"record {record.get('problem_id', index)}: data_type={record.get('data_type')!r}; the video "
                "trainer reads video records (train image records with TRL's image path: see docs/training.md)"
            )
        video = resolve_video(record, root)
        frames = record.get("frame_indices")
        if check_videos:
            try:
                if frames is None:
                    probe_video(video, sampling)  # metadata only: no frame is decoded at startup
                else:
                    problem = check_frame_indices(list(frames), probe_video(video).total_frames)
                    if problem is not None:
                        raise VideoDecodeError(video, problem)
            except VideoDecodeError as err:
                skipped.append(
                    {"problem_id": record.get("problem_id", index), "path": str(video), "reason": str(err)}
                )
                logger.warning("skipping record %s: %s", record.get("problem_id", index), err)
                continue
        part = {"type": "video", "video": str(video)}
        if frames is not None:  # chosen by a frame selector (videoktr frames select): used by every pass
            part["frame_indices"] = [int(i) for i in frames]
        content = [
            part,
            {"type": "text", "text": build_question(record, template)},
        ]
        row = {"prompt": [{"role": "user", "content": content}]}
        row.update({k: record.get(k) for k in columns})
        rows.append(row)
    if not rows:
        raise UserError(f"no usable record: all {len(records)} were skipped (first: {skipped[:1]})")
    return PreparedData(rows=rows, skipped=skipped)


def to_dataset(rows: list[dict]):
    """A ``datasets.Dataset`` of the rows (TRL's trainers read ``datasets``)."""
    from datasets import Dataset

    return Dataset.from_list(rows)
