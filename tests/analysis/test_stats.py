"""Selection statistics and attribution precision on a crafted two-completion example."""

import pytest

from videoktr.analysis.stats import attribution_precision, evidence_mask, precision_table, selection_stats
from videoktr.analysis.tokens import token_records

# Completion 0: "The red ball moves left then."
#   The[0,3) " red"[3,7) " ball"[7,12) " moves"[12,18) " left"[18,23) " "[23,24) "then"[24,28) "."[28,29)
P0 = ["The", " red", " ball", " moves", " left", " ", "then", "."]
M0 = {
    "visual": [False, True, False, True, False, True, False, False],
    "temporal": [False, False, False, True, True, False, True, False],
    "entropy": [False] * 8,
}
L0 = [(4, 7, "visual"), (8, 12, "visual"), (13, 18, "temporal"), (19, 23, "temporal"), (24, 28, "temporal")]
# Completion 1: "It turns"  It[0,2) " "[2,3) turns[3,8); a visual span covering only the space token.
P1 = ["It", " ", "turns"]
M1 = {"visual": [True, False, False], "temporal": [False, False, True], "entropy": [False] * 3}
L1 = [(2, 3, "visual"), (3, 8, "temporal")]


@pytest.fixture()
def data():
    scores0 = {"visual": [float(i) for i in range(8)]}
    scores1 = {"visual": [1.0, 1.0, 1.0]}
    return [token_records(P0, M0, scores0), token_records(P1, M1, scores1)], [L0, L1]


def test_evidence_mask_intersection_and_whitespace():
    recs = token_records(P1, M1)
    assert evidence_mask(recs, L1, "visual") == [False, False, False]  # the space is never evidence
    assert evidence_mask(recs, L1, "temporal") == [False, False, True]
    # " red" [3,7) intersects "red" [4,7); "The" [0,3) does not touch [4,7) (end exclusive)
    assert evidence_mask(token_records(P0, M0), L0, "visual")[:3] == [False, True, True]


def test_precision_and_base_rate_hand_computed(data):
    records, labels = data
    vis = attribution_precision(records, labels, "visual", "visual")
    # visual selects " red" (evidence), " moves", " " (whitespace), "It" -> 1 of 4 selected is visual evidence.
    # visual evidence among all 8 + 3 = 11 tokens: " red", " ball" -> base rate 2/11.
    assert vis["n_selected"] == 4 and vis["n_selected_evidence"] == 1 and vis["n_tokens"] == 11
    assert vis["precision"] == pytest.approx(1 / 4)
    assert vis["base_rate"] == pytest.approx(2 / 11)
    tem = attribution_precision(records, labels, "temporal", "temporal")
    # temporal selects " moves", " left", "then", "turns": all 4 temporal evidence; 4 evidence tokens of 11.
    assert tem["precision"] == pytest.approx(4 / 4) and tem["base_rate"] == pytest.approx(4 / 11)
    uni = attribution_precision(records, labels, "union", "temporal")
    # union = 5 tokens in completion 0 (red, moves, left, " ", then) + 2 in completion 1 (It, turns) = 7;
    # 4 of them are temporal evidence.
    assert uni["n_selected"] == 7 and uni["precision"] == pytest.approx(4 / 7)


def test_zero_selected_gives_none_not_nan(data):
    records, labels = data
    out = attribution_precision(records, labels, "entropy", "visual")
    assert out["precision"] is None and out["n_selected"] == 0
    assert out["base_rate"] == pytest.approx(2 / 11)
    empty = attribution_precision([[]], [[]], "union", "visual")
    assert empty == {
        "precision": None,
        "base_rate": None,
        "n_selected": 0,
        "n_tokens": 0,
        "n_evidence": 0,
        "n_selected_evidence": 0,
    }


def test_bad_inputs(data):
    records, labels = data
    with pytest.raises(ValueError, match="valid: visual, temporal, entropy, union"):
        attribution_precision(records, labels, "audio", "visual")
    with pytest.raises(ValueError, match="one list per completion"):
        attribution_precision(records, labels[:1], "visual", "visual")
    with pytest.raises(ValueError, match="completion 1: evidence span"):
        attribution_precision(records, [L0, [(3, 99, "visual")]], "visual", "visual")  # text has 8 chars


def test_precision_table_keys(data):
    records, labels = data
    table = precision_table(records, labels)
    assert list(table) == [
        f"{s}/{k}" for s in ("visual", "temporal", "entropy", "union") for k in ("visual", "temporal")
    ]
    assert table["visual/visual"]["precision"] == pytest.approx(1 / 4)


def test_selection_stats_hand_computed(data):
    records, _ = data
    st = selection_stats(records, top_k=3)
    assert st["n_tokens"] == 11 and st["n_completions"] == 2
    # visual 4 tokens, temporal 4, entropy 0, union 7 (of 11)
    assert st["selected_frac"] == pytest.approx(
        {"visual": 4 / 11, "temporal": 4 / 11, "entropy": 0.0, "union": 7 / 11}
    )
    # visual and temporal share only " moves": Jaccard overlap 1 / (4 + 4 - 1) = 1/7, both_frac 1/11
    assert st["overlap"]["visual_temporal"] == pytest.approx(1 / 7)
    assert st["both_frac"]["visual_temporal"] == pytest.approx(1 / 11)
    # entropy selects nothing: Jaccard 0 / 4 = 0 (a selection exists on one side), both_frac 0 / 11
    assert st["overlap"]["visual_entropy"] == 0.0 and st["both_frac"]["temporal_entropy"] == 0.0
    # union count per completion: 5 and 2
    assert st["union_per_completion"] == {"mean": 3.5, "min": 2, "max": 5}
    # mean visual score: (0+1+...+7 + 3*1) / 11 = (28 + 3) / 11
    assert st["mean_score"] == {"visual": pytest.approx(31 / 11)}
    # whitespace-only " " is not a word; ties sorted alphabetically
    assert st["top_words"]["visual"] == [("It", 1), ("moves", 1), ("red", 1)]
    assert st["top_unselected_words"] == [(".", 1), ("The", 1), ("ball", 1)]


def test_selection_stats_empty_is_none():
    st = selection_stats([])
    assert st["n_tokens"] == 0 and st["selected_frac"] == {"union": None}
    assert st["union_per_completion"] == {"mean": None, "min": None, "max": None}


def test_overlap_of_two_empty_selections_is_none():
    recs = token_records(["a", "b"], {"visual": [False, False], "temporal": [False, False]})
    st = selection_stats([recs])
    # Jaccard 0 / 0 -> None (the trainer logs 0 here); both_frac 0 / 2 = 0
    assert st["overlap"]["visual_temporal"] is None and st["both_frac"]["visual_temporal"] == 0.0


def _shares(values, tol=1e-9):
    """Fraction of replicate means equal to each value (sorted by value)."""
    import numpy as np

    values = np.asarray(values)
    return {round(float(v), 6): float(np.mean(np.abs(values - v) < tol)) for v in np.unique(values.round(6))}


def test_paired_bootstrap_replicates_match_the_enumerated_distribution():
    import numpy as np

    from videoktr.analysis.stats import _bootstrap_replicates

    # one seed, two questions, differences d = (0, 1): resampling 2 of {0, 1} gives means
    # 0 (both draws d1: 1/4), 0.5 (one of each: 2/4), 1 (both d2: 1/4)
    reps = _bootstrap_replicates(np.array([[0.0, 1.0]]), 40000, np.random.default_rng(0), False)
    shares = _shares(reps)
    assert set(shares) == {0.0, 0.5, 1.0}
    assert shares[0.0] == pytest.approx(0.25, abs=0.01) and shares[0.5] == pytest.approx(0.5, abs=0.01)
    # two seeds, one question, differences 0 (seed 0) and 1 (seed 1): seeds fixed -> always their mean 0.5;
    # seeds resampled -> 0 (1/4), 0.5 (1/2), 1 (1/4) as above
    fixed = _bootstrap_replicates(np.array([[0.0], [1.0]]), 1000, np.random.default_rng(0), False)
    assert set(fixed.tolist()) == {0.5}
    shares = _shares(_bootstrap_replicates(np.array([[0.0], [1.0]]), 40000, np.random.default_rng(0), True))
    assert shares[0.0] == pytest.approx(0.25, abs=0.01) and shares[1.0] == pytest.approx(0.25, abs=0.01)


def test_paired_bootstrap_interval_and_pairing():
    from videoktr.analysis.stats import paired_bootstrap

    # a - b = (0, 1) per question: mean 0.5; the 2.5% / 97.5% quantiles of {0: 1/4, 0.5: 1/2, 1: 1/4} are 0 and 1
    out = paired_bootstrap([[1, 1]], [[1, 0]], n_boot=4000)
    assert out["mean"] == 0.5 and (out["low"], out["high"], out["half_width"]) == (0.0, 1.0, 0.5)
    assert (out["n_seeds"], out["n_questions"], out["resampled"]) == (1, 2, "questions")
    # a = b on every question of 2 seeds: each replicate resamples the same questions for both arms, so the paired
    # interval has zero width although a's own accuracy varies a lot between questions (pairing removes the
    # difficulty both arms share); a's own interval around 0.5 is wide (10 questions).
    a = [[1, 0, 1, 0, 1, 1, 0, 0, 1, 0]] * 2
    same = paired_bootstrap(a, a, n_boot=500)
    assert (same["mean"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
    own = paired_bootstrap(a, n_boot=2000)
    assert own["mean"] == 0.5 and own["low"] < 0.3 and own["high"] > 0.7
    seeds = paired_bootstrap([[1, 1], [0, 0]], [[0, 0], [0, 0]], n_boot=4000, resample_seeds=True)
    assert seeds["mean"] == 0.5 and (seeds["low"], seeds["high"]) == (0.0, 1.0)
    assert seeds["resampled"] == "questions+seeds"


def test_paired_bootstrap_refuses_mismatched_shapes():
    from videoktr.analysis.stats import paired_bootstrap

    with pytest.raises(ValueError, match=r"must both be \(seeds, questions\)"):
        paired_bootstrap([[1, 0, 1]], [[1, 0]])
    with pytest.raises(ValueError, match="level=1.5"):
        paired_bootstrap([[1, 0]], level=1.5)
