import numpy as np
import pytest
import torch

from videoktr.data.video import VideoSamplingConfig, decode_video, write_video
from videoktr.errors import UserError
from videoktr.frames.config import VoyagerConfig
from videoktr.frames.querier import Querier, QuerierConfig
from videoktr.frames.select import SELECTORS, load_selector, select_frames

SAMPLING = VideoSamplingConfig(num_frames=6, max_pixels=56 * 112)


def _encode(tiny, sparse_data, record, cfg):
    from videoktr.data.prompts import build_question
    from videoktr.frames.features import decode_candidates, encode_candidates

    model, processor = tiny
    video = decode_candidates(
        sparse_data["root"] / record["path"], record["problem_id"], cfg.candidates, SAMPLING
    )
    return encode_candidates(model, processor, video, build_question(record, "short"), cfg.unit, SAMPLING)


def _querier(candidate, cfg, fingerprint="x"):
    torch.manual_seed(0)
    qcfg = QuerierConfig(feature_dim=candidate.pooled().shape[-1], query_dim=candidate.query_embeddings.shape[-1],
                         n_units=cfg.n_units, model_fingerprint=fingerprint, candidates=cfg.candidates, unit=cfg.unit)  # fmt: skip
    return Querier(qcfg)


@pytest.mark.parametrize("frames", [2, 6, 8])
def test_every_selector_returns_t_sorted_in_range_indices(tiny, sparse_data, sparse_records, frames):
    cfg = VoyagerConfig(frames=frames)
    record = sparse_records[1][0]
    candidate = _encode(tiny, sparse_data, record, cfg)
    querier = _querier(candidate, cfg)
    for name in SELECTORS.names():
        chosen = select_frames(name, record, 16, cfg, candidate=candidate, querier=querier)
        assert len(chosen) == frames and chosen == sorted(set(chosen)) and 0 <= chosen[0] and chosen[-1] < 16
        if name != "uniform":  # unit-aligned: whole temporal patches of the candidates
            assert all(chosen[i + 1] == chosen[i] + 1 and chosen[i] % 2 == 0 for i in range(0, frames, 2))


def test_voyager_takes_the_top_scored_units(tiny, sparse_data, sparse_records):
    from videoktr.frames.train import score_units

    cfg = VoyagerConfig(frames=6)
    record = sparse_records[1][1]
    candidate = _encode(tiny, sparse_data, record, cfg)
    querier = _querier(candidate, cfg)
    scores = score_units(querier, candidate)
    best = sorted(torch.topk(scores, 3).indices.tolist())
    assert select_frames("voyager", record, 16, cfg, candidate=candidate, querier=querier) == [
        f for u in best for f in (2 * u, 2 * u + 1)
    ]


def test_oracle_is_sufficient_and_uniform_is_what_eval_samples(sparse_records):
    from videoktr.data.video import uniform_indices
    from videoktr.frames.sparse import is_sufficient

    cfg = VoyagerConfig(frames=6)
    for record in sparse_records[0]:
        assert is_sufficient(record["evidence_rule"], select_frames("oracle", record, 16, cfg))
        assert select_frames("uniform", record, 16, cfg) == uniform_indices(16, 6) == [0, 3, 6, 9, 12, 15]


def test_processor_gets_the_chosen_frames_and_their_timestamps(tiny, sparse_data, sparse_records):
    from transformers.video_utils import VideoMetadata

    from videoktr.models.qwen2_5_vl import build_video_inputs

    model, processor = tiny
    record = sparse_records[1][0]
    chosen = [2, 3, 8, 9, 14, 15]
    video = decode_video(sparse_data["root"] / record["path"], SAMPLING, indices=chosen)
    full = decode_video(sparse_data["root"] / record["path"], VideoSamplingConfig(num_frames=16))
    assert video.frame_indices == chosen
    assert torch.equal(video.frames, full.frames[chosen])  # exactly those frames, in that order
    meta = VideoMetadata(**video.metadata_dict())
    assert meta.timestamps == pytest.approx(
        [i / 4.0 for i in chosen]
    )  # fps 4: real times of the chosen frames
    inputs = build_video_inputs(processor, ["q"], [video], sampling=SAMPLING)
    assert inputs["video_grid_thw"][0, 0] == 3  # 6 frames -> 3 temporal patches
    # Qwen2.5-VL keeps one rate per video: 6 frames over the clip's 4 s -> 1.5 fps -> 2 / 1.5 s per patch
    assert float(inputs["second_per_grid_ts"][0]) == pytest.approx(2 / (6 / 16 * 4.0))


@pytest.mark.parametrize("bad", [[3, 2], [0, 16], [0, 1, 2], [], [1, 1]])
def test_bad_explicit_indices_refused_naming_the_file(sparse_data, sparse_records, bad):
    path = sparse_data["root"] / sparse_records[0][0]["path"]
    with pytest.raises(UserError, match=str(path)):
        decode_video(path, SAMPLING, indices=bad)


def test_t_above_m_refused():
    with pytest.raises(UserError, match="T=8 > M=6"):
        VoyagerConfig(candidates=6, frames=8)


def test_video_with_fewer_than_m_frames_refused_with_record_id(tmp_path):
    from videoktr.frames.features import decode_candidates

    write_video(tmp_path / "short.mp4", np.full((8, 56, 56, 3), 100, dtype=np.uint8), fps=4)
    with pytest.raises(UserError, match=r"record r-7: its video has 8 frames, fewer than M=16.*--candidates"):
        decode_candidates(tmp_path / "short.mp4", "r-7", 16, SAMPLING)
    record = {"problem_id": "r-7", "evidence_rule": {"all_of": [[0, 1]]}}
    with pytest.raises(UserError, match="record r-7"):
        select_frames("random", record, 8, VoyagerConfig(candidates=16))


def test_selector_from_another_model_refused(tiny, sparse_data, sparse_records, tmp_path):
    from videoktr.frames.features import model_fingerprint
    from videoktr.models.tiny import TinyModelConfig, build_tiny_model, load_model_and_processor

    model, _ = tiny
    cfg = VoyagerConfig()
    candidate = _encode(tiny, sparse_data, sparse_records[1][0], cfg)
    _querier(candidate, cfg, model_fingerprint(model)).save_pretrained(tmp_path / "sel")
    assert load_selector(tmp_path / "sel", model, "ours", cfg) is not None
    other_dir = build_tiny_model(tmp_path / "other", config=TinyModelConfig(seed=1))
    other, _ = load_model_and_processor(other_dir)
    with pytest.raises(UserError, match="trained on the features of another model.*videoktr frames train"):
        load_selector(tmp_path / "sel", other, str(other_dir), cfg)
    with pytest.raises(UserError, match="M=16 candidates.*--candidates 16"):
        load_selector(tmp_path / "sel", model, "ours", VoyagerConfig(candidates=32))
    with pytest.raises(UserError, match="not a querier checkpoint"):
        load_selector(tmp_path, model, "ours", cfg)
