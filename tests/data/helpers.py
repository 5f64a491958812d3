"""Records and files shared by the data tests."""

import json

import numpy as np

from videoktr.data.video import write_video


def good_record(**changes):
    record = {
        "problem_id": 1,
        "problem": "Which color appears first?",
        "data_type": "video",
        "problem_type": "multiple choice",
        "options": ["A. red", "B. green", "C. blue", "D. yellow"],
        "solution": "<answer>B</answer>",
        "path": "videos/a.mp4",
        "data_source": "test",
    }
    record.update(changes)
    return record


def planted_dataset(root):
    """Records 0 and 7 are fine; each of 1-6 has one fault. a.mp4 and b.mp4 are shared (warnings)."""
    frames = np.full((4, 16, 16, 3), 128, dtype=np.uint8)
    write_video(root / "videos" / "a.mp4", frames, fps=4.0)
    write_video(root / "videos" / "b.mp4", frames, fps=4.0)
    data = (root / "videos" / "a.mp4").read_bytes()
    (root / "videos" / "cut.mp4").write_bytes(data[: len(data) // 2])
    missing_problem = good_record(problem_id=5, path="videos/b.mp4")
    del missing_problem["problem"]
    records = [
        good_record(problem_id=1),
        good_record(problem_id=2, path="videos/gone.mp4"),  # missing file
        good_record(problem_id=3, path="videos/cut.mp4"),  # truncated mp4
        good_record(problem_id=4, path="videos/b.mp4", solution="<answer>E</answer>"),  # letter not an option
        missing_problem,  # missing field
        good_record(problem_id=6, path="videos/b.mp4", problem_type="mcq"),  # bad problem_type
        good_record(problem_id=1, path="videos/b.mp4"),  # duplicate id
        good_record(problem_id=8),  # same video as record 0: warning only
    ]
    path = root / "planted.json"
    path.write_text(json.dumps(records))
    return path
