"""Is a synthetic question kind's answer linearly readable from the pixels, and from the tiny model's video features?

    python scripts/probe_kinds.py --model runs/ablate/sft --kinds count direction --n 600 --out /tmp/probe

For each kind: ``--n`` fresh synthetic videos (balanced answers), split 2:1 into fit / held-out; a ridge one-vs-rest
linear probe (closed form, numpy) on three feature sets: the frames (8 x 3 x 14 x 28 after 4x4 average pooling),
the video features the LLM receives from ``--model`` (its vision tower + merger, flattened over the tokens), and the
same from ``--model``'s own config with random weights (the untrained tower). Prints held-out probe accuracy (chance
= 1/4). A kind the pixels give away but the features do not is lost in the vision tower, not in the language model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def _probe(x: np.ndarray, y: np.ndarray, n_fit: int, lam: float = 1.0) -> float:
    """Held-out accuracy of a ridge least-squares classifier onto one-hot labels (standardised features)."""
    mu, sd = x[:n_fit].mean(0), x[:n_fit].std(0) + 1e-6
    x = (x - mu) / sd
    x = np.hstack([x, np.ones((len(x), 1))])
    onehot = np.eye(y.max() + 1)[y]
    a = x[:n_fit]
    w = a.T @ np.linalg.solve(a @ a.T + lam * len(a) * np.eye(len(a)), onehot[:n_fit])  # dual form: n << d
    return float(((x[n_fit:] @ w).argmax(1) == y[n_fit:]).mean())


def main() -> None:
    from videoktr.data.schema import load_records
    from videoktr.data.synthetic import make_synthetic
    from videoktr.data.video import VideoSamplingConfig, decode_video
    from videoktr.models.inputs import build_video_inputs
    from videoktr.models.qwen2_5_vl import encode_videos
    from videoktr.models.tiny import load_model_and_processor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--kinds", nargs="+", default=["count", "direction"])
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    trained, processor = load_model_and_processor(args.model)
    random = type(trained)(trained.config).eval()
    sampling = VideoSamplingConfig(num_frames=8, max_pixels=56 * 112)
    results = {}
    for kind in args.kinds:
        paths = make_synthetic(Path(args.out) / kind, 0, args.n, seed=3, kinds=[kind])
        records = load_records(paths["test"])
        labels = np.array(["ABCD".index(r["solution"][len("<answer>")]) for r in records])  # answer letter
        videos = [decode_video(paths["root"] / r["path"], sampling) for r in records]
        pixels = torch.stack([v.frames.float() for v in videos])  # (n, T, C, H, W)
        pooled = torch.nn.functional.avg_pool2d(pixels.flatten(0, 1), 4).reshape(len(videos), -1).numpy()
        feats = {}
        for name, model in (("features_trained", trained), ("features_random", random)):
            rows = []
            with torch.no_grad():
                for begin in range(0, len(videos), 32):
                    chunk = videos[begin : begin + 32]
                    inputs = build_video_inputs(processor, ["q"] * len(chunk), chunk, sampling=sampling)
                    out = encode_videos(model, inputs["pixel_values_videos"], inputs["video_grid_thw"])
                    rows += [f.flatten().numpy() for f in out]
            feats[name] = np.stack(rows)
        n_fit = 2 * len(records) // 3
        results[kind] = {
            "pixels": _probe(pooled, labels, n_fit),
            **{name: _probe(x, labels, n_fit) for name, x in feats.items()},
            "n_fit": n_fit,
            "n_heldout": len(records) - n_fit,
        }
        print(kind, json.dumps(results[kind]))
    Path(args.out, "probe.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
