import math

import pytest
import torch

from videoktr.frames.config import VoyagerConfig
from videoktr.frames.features import CandidateVideo
from videoktr.frames.querier import (
    Querier,
    QuerierConfig,
    combination_scores,
    pairwise_ranking_loss,
    top_units,
)
from videoktr.frames.train import score_units, train_querier


def test_combination_score_is_the_mean_of_its_units():
    scores = torch.tensor([[1.0, 2.0, 4.0, 8.0]])
    combos = torch.tensor([[[0, 1], [2, 3], [1, 3]]])
    # (1+2)/2 = 1.5, (4+8)/2 = 6, (2+8)/2 = 5
    assert combination_scores(scores, combos).tolist() == [[1.5, 6.0, 5.0]]


def test_ranking_loss_hand_values():
    win, lose = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    # -log sigmoid(2) = log(1 + e^-2) = 0.12693; -log sigmoid(0) = log 2
    assert float(pairwise_ranking_loss(win, lose)) == pytest.approx(
        (math.log1p(math.exp(-2)) + math.log(2)) / 2
    )
    assert float(pairwise_ranking_loss(win, lose, torch.tensor([[True, False]]))) == pytest.approx(
        math.log1p(math.exp(-2))
    )


def test_top_units_time_order_and_ties():
    assert top_units(torch.tensor([0.1, 0.9, 0.5, 0.9]), 2) == [1, 3]
    assert top_units(torch.tensor([3.0, 1.0, 2.0, 0.0]), 3) == [0, 1, 2]
    assert top_units(torch.tensor([1.0, 1.0, 1.0]), 1) == [0]  # tie: the earlier unit


def test_best_combination_is_the_top_units():
    """r(c) = mean of unit scores, so the top-k units are the best k-combination (exhaustive check)."""
    import itertools

    torch.manual_seed(0)
    for _ in range(20):
        scores = torch.randn(8)
        combos = torch.tensor([list(c) for c in itertools.combinations(range(8), 3)])
        best = combos[combination_scores(scores[None], combos[None])[0].argmax()].tolist()
        assert best == top_units(scores, 3)


def _synthetic_features(n_records=48, n_units=8, dim=6, seed=0):
    """Unit descriptors whose first channel marks the colour asked about by a one-hot query; the good units are
    the asked-colour unit and the unit right after it (a relation the querier must learn)."""
    g = torch.Generator().manual_seed(seed)
    feats, lines = {}, []
    combos = [[a, b] for a in range(n_units) for b in range(a + 1, n_units)]
    for r in range(n_records):
        colour = int(torch.randint(0, 3, (1,), generator=g))
        units = torch.randn(n_units, 4, dim // 2, generator=g) * 0.1
        target = int(torch.randint(0, n_units - 1, (1,), generator=g))
        for u in range(n_units):
            units[u, :, 0] = float(u == target) * (colour + 1)
            units[u, :, 1] = float(u != target) * (1 + (u % 3))
        query = torch.zeros(2, 5)
        query[0, colour] = 1.0
        query[1, 4] = 1.0
        pid = f"r{r}"
        feats[pid] = CandidateVideo(video=None, unit_features=units, query_embeddings=query)
        good = {target, target + 1}
        losses = [0.0 if set(c) == good else 1.0 + 0.5 * len(good - set(c)) for c in combos]
        lines.append({"problem_id": pid, "combinations": combos, "losses": losses, "kept": True})
    return feats, lines


def test_training_learns_to_rank_and_save_load_roundtrip(tmp_path):
    feats, lines = _synthetic_features()
    cfg = VoyagerConfig(candidates=16, frames=4, train_steps=150, records_per_step=16, seed=0)
    querier, history = train_querier(feats, lines, cfg, "fp", "model")
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    hits = [top_units(score_units(querier, feats[line["problem_id"]]), 2) == line["combinations"][
        line["losses"].index(0.0)] for line in lines]  # fmt: skip
    assert sum(hits) / len(hits) > 0.8
    querier.save_pretrained(tmp_path / "q", extra={"note": 1})
    loaded, saved = Querier.from_pretrained(tmp_path / "q")
    assert saved["model_fingerprint"] == "fp" and saved["note"] == 1
    some = feats["r0"]
    torch.testing.assert_close(score_units(loaded, some), score_units(querier, some))


def test_unlabelled_or_flat_records_refused():
    from videoktr.errors import UserError

    feats, lines = _synthetic_features(n_records=2)
    flat = [{**line, "losses": [1.0] * len(line["losses"])} for line in lines]
    with pytest.raises(UserError, match="pair_margin"):
        train_querier(feats, flat, VoyagerConfig(candidates=16, frames=4), "fp", "m")


def test_querier_shape_check():
    q = Querier(QuerierConfig(feature_dim=4, query_dim=3, n_units=5))
    with pytest.raises(ValueError, match="5 units"):
        q(torch.zeros(1, 4, 4), torch.zeros(1, 2, 3), torch.ones(1, 2, dtype=torch.bool))


def test_pairs_winners_only_among_the_lowest_losses():
    from videoktr.errors import UserError
    from videoktr.frames.train import _pairs

    losses = [3.0, 1.0, 2.0, 0.5, 1.0]
    every = {tuple(p) for p in _pairs(losses, 0.1).tolist()}
    assert every == {(w, j) for w in range(5) for j in range(5) if losses[j] - losses[w] >= 0.1}
    # the lowest 2 of 5: 0.5 and 1.0, and the tie at the cut (index 4, also 1.0) is a winner too
    top = {tuple(p) for p in _pairs(losses, 0.1, 0.4).tolist()}
    assert top == {(3, 0), (3, 1), (3, 2), (3, 4), (1, 0), (1, 2), (4, 0), (4, 2)}
    assert {tuple(p) for p in _pairs(losses, 0.1, 0.01).tolist()} == {(3, 0), (3, 1), (3, 2), (3, 4)}
    with pytest.raises(UserError, match="winner_fraction"):
        VoyagerConfig(winner_fraction=0.0)
