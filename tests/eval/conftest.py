import json

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from videoktr.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory):
    """Three Video-R1 records with 4-frame 56x56 synthetic videos: (data file, video root)."""
    from videoktr.data.video import write_video

    root = tmp_path_factory.mktemp("tiny_bench")
    (root / "videos").mkdir()
    rows = []
    for k, color in enumerate(([255, 0, 0], [0, 255, 0], [0, 0, 255])):
        frames = np.zeros((4, 56, 56, 3), dtype=np.uint8)
        frames[:, 8 * k : 8 * k + 24, 8:32] = color
        write_video(root / "videos" / f"v{k}.mp4", frames, fps=2)
        rows.append(
            {"problem_id": f"t{k}", "problem": "What color is the square?", "data_type": "video",
             "problem_type": "multiple choice", "options": ["A. red", "B. green", "C. blue"],
             "solution": f"<answer>{'ABC'[k]}</answer>", "path": f"videos/v{k}.mp4", "data_source": "test",
             "family": "static", "question_kind": "color"}
        )  # fmt: skip
    data = root / "bench.json"
    data.write_text(json.dumps(rows))
    return data, root


@pytest.fixture
def video_root(tmp_path):
    """Empty files named after the Video-MME fixture's videos (the fake backends never open them)."""
    root = tmp_path / "videos"
    root.mkdir()
    for name in ("fFjv93ACGo8", "abcdEFGhijk", "lmnoPQRstuv"):
        (root / f"{name}.mp4").touch()
    return root
