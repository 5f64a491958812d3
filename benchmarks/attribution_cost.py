"""Cost of the attribution passes: one shared vision pass + 3 LM passes vs 3 plain forwards (METHOD 1).

    python benchmarks/attribution_cost.py [--repeats 3] [--threads 2]

For each model size (the tiny test model and a larger CPU-sized one), one prompt with a 16-frame 112x112 video and
G=4 sampled completions (the 4 rows share the video):
- shared: ``attribution_passes`` = one vision pass (copies deduplicated) + full / zeroed / shuffled LM passes;
- plain: three ordinary forwards with pixels (full, zeroed pixels, frame-shuffled pixels), each re-encoding the
  video of every row.
Prints the median wall time of each, the vision-encoder calls (and videos encoded) of each, and the ratio.
Randomly initialised models: the timing does not depend on the weights.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from videoktr.data.video import DecodedVideo
from videoktr.models import qwen2_5_vl as q
from videoktr.models.tiny import TinyModelConfig, _model_config, build_processor, build_tokenizer

SIZES = {
    "tiny": TinyModelConfig(),
    "cpu-medium": TinyModelConfig(
        hidden_size=512,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        intermediate_size=1024,
        mrope_section=(4, 6, 22),
        vision_hidden_size=256,
        vision_depth=4,
        vision_num_heads=4,
        vision_intermediate_size=512,
    ),
}


def make_clip(n_frames: int = 16, side: int = 112, fps: float = 2.0) -> DecodedVideo:
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (n_frames, 3, side, side), dtype=torch.uint8, generator=g)
    return DecodedVideo(frames, fps, list(range(n_frames)), fps, n_frames, n_frames / fps, "synthetic.mp4")


def plain_passes(model, processor, inputs, clip, ids, mask, g: int) -> None:
    """Three ordinary teacher-forced forwards, pixels in: full, zeroed pixels, frame-shuffled pixels."""
    zero = dict(inputs, pixel_values_videos=torch.zeros_like(inputs["pixel_values_videos"]))
    perm = torch.randperm(clip.frames.shape[0], generator=torch.Generator().manual_seed(0))
    shuffled = q.reencode_with_frame_permutation(processor, [clip] * g, [perm] * g)
    with torch.no_grad():
        for variant in (inputs, zero, {**inputs, **shuffled}):
            q.completion_logps(model, variant, ids, mask, with_entropy=True)


def timed(fn, repeats: int, model) -> tuple[float, int]:
    times, calls = [], 0
    for _ in range(repeats):
        with q.VisionCallCounter(model) as counter:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        calls = counter.count
    return statistics.median(times), calls


def bench(name: str, config: TinyModelConfig, repeats: int, g: int, completion_len: int) -> None:
    from transformers import Qwen2_5_VLForConditionalGeneration

    tokenizer = build_tokenizer(vocab_size=config.vocab_size)
    config.max_pixels = 112 * 112
    processor = build_processor(tokenizer, config)
    torch.manual_seed(config.seed)
    model = Qwen2_5_VLForConditionalGeneration(_model_config(tokenizer, config)).eval()
    clip = make_clip()
    inputs = q.build_video_inputs(processor, ["Which way does the square move?"] * g, [clip] * g)
    ids = torch.randint(
        20, len(tokenizer) - 20, (g, completion_len), generator=torch.Generator().manual_seed(1)
    )
    mask = torch.ones_like(ids)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    video_tokens = int((inputs["mm_token_type_ids"][0] == q.VIDEO_TYPE).sum())

    def shared():
        q.attribution_passes(model, inputs, ids, mask, visual="zero", temporal="shuffle")

    shared()  # warm-up (allocations, kernels)
    t_shared, c_shared = timed(shared, repeats, model)
    t_plain, c_plain = timed(
        lambda: plain_passes(model, processor, inputs, clip, ids, mask, g), repeats, model
    )
    print(
        f"[{name}] {params:.1f}M params, G={g} rows x (prompt {inputs['input_ids'].shape[1]} incl. "
        f"{video_tokens} video tokens + completion {completion_len}), grid {inputs['video_grid_thw'][0].tolist()}"
    )
    print(
        f"  shared vision + 3 LM passes: {t_shared * 1e3:8.1f} ms   vision calls {c_shared} (1 video encoded)"
    )
    print(
        f"  3 plain forwards           : {t_plain * 1e3:8.1f} ms   vision calls {c_plain} ({3 * g} videos encoded)"
    )
    print(f"  ratio plain / shared       : {t_plain / t_shared:8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--group", type=int, default=4, help="G completions of the prompt")
    parser.add_argument("--completion-len", type=int, default=32, help="completion tokens per row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, config in SIZES.items():
        bench(name, config, args.repeats, args.group, args.completion_len)


if __name__ == "__main__":
    main()
