import numpy as np
import pytest

from videoktr.analysis.attribution import attribution_table, token_labels, weighted_auroc
from videoktr.analysis.tokens import token_records

# completion 0: "The red square first", " red" is an order word; completion 1: "I see blue", " blue" a content word
PIECES = [["The", " red", " square", " first"], ["I", " see", " blue"]]
SPANS = [[(4, 7, "order")], [(6, 10, "content")]]
SCORES = [[0.1, 0.9, 0.2, 0.3], [0.5, 0.1, 0.8]]
MASKS = [[False, True, False, False], [False, False, True]]


def records(pieces=PIECES, scores=SCORES, masks=MASKS):
    return [token_records(p, {"visual": m}, {"visual": s}) for p, s, m in zip(pieces, scores, masks)]


def test_token_labels_order_wins_and_whitespace_is_filler():
    recs = token_records(["a", " ", "bc"], {"visual": [False] * 3})
    # "bc" overlaps an order span and a content span: order (first in labels); the space is never labelled
    assert token_labels(recs, [(0, 1, "content"), (2, 3, "order"), (3, 4, "content"), (1, 2, "order")],
                        ("order", "content")) == ["content", "filler", "order"]  # fmt: skip


def test_weighted_auroc_by_hand():
    # positives 0.9, 0.4; negatives 0.4, 0.1: pairs (0.9>0.4, 0.9>0.1, 0.4=0.4 -> 1/2, 0.4>0.1) = 3.5 / 4
    scores, pos = np.array([0.9, 0.4, 0.4, 0.1]), np.array([True, True, False, False])
    assert weighted_auroc(scores, pos, np.ones(4)) == pytest.approx(3.5 / 4)
    # weight 2 on the tied negative = that negative twice (3 negative units): 0.9 beats all 3; 0.4 ties two
    # (1/2 each) and beats 0.1 -> (3 + 1 + 1) / (2 * 3)
    assert weighted_auroc(scores, pos, np.array([1, 1, 2, 1.0])) == pytest.approx(5 / 6)
    assert weighted_auroc(scores, np.zeros(4, bool), np.ones(4)) is None


def test_table_by_hand():
    table = attribution_table(records(), SPANS, n_boot=50)
    order, content = table["visual"]["order"], table["visual"]["content"]
    # order: the one positive (0.9) outscores all 6 others; visual selected " red" and " blue": 1 of 2 is order
    assert order["auroc"] == 1.0
    assert order["precision"] == 0.5 and order["base_rate"] == pytest.approx(1 / 7)
    assert order["lift"] == pytest.approx(3.5)
    # content: " blue" (0.8) outscores 5 of the 6 others (not 0.9)
    assert content["auroc"] == pytest.approx(5 / 6)
    assert (content["n_tokens"], content["n_label"], content["n_selected"]) == (7, 1, 2)
    # the key-token mask has no score: precision and lift only
    assert table["union"]["order"]["auroc"] is None and table["union"]["order"]["lift"] == pytest.approx(3.5)
    for entry in (order, content):
        for key in ("auroc", "precision", "lift"):
            low, high = entry["ci"][key]
            assert low <= entry[key] <= high
        assert entry["ci"]["n_boot"] == 50 and entry["ci"]["level"] == 0.95


def test_unlabelled_completions_are_left_out():
    recs = records(PIECES + [["x", "y"]], SCORES + [[0.99, 0.98]], MASKS + [[True, True]])
    table = attribution_table(recs, [*SPANS, None], n_boot=5)
    assert table["visual"]["order"]["n_tokens"] == 7 and table["visual"]["order"]["precision"] == 0.5


def test_identical_completions_give_a_zero_width_interval():
    recs = records([PIECES[0]] * 4, [SCORES[0]] * 4, [MASKS[0]] * 4)
    entry = attribution_table(recs, [SPANS[0]] * 4, n_boot=20)["visual"]["order"]
    assert entry["ci"]["precision"] == [1.0, 1.0] and entry["ci"]["auroc"] == [1.0, 1.0]


def test_bootstrap_interval_covers_the_spread_of_completions():
    # half the completions' selections hit the order word, half miss: precision 0.5, a wide interval around it
    hit, miss = [False, True, False, False], [True, False, False, False]
    recs = records([PIECES[0]] * 40, [SCORES[0]] * 40, [hit, miss] * 20)
    entry = attribution_table(recs, [SPANS[0]] * 40, n_boot=300, seed=1)["visual"]["order"]
    low, high = entry["ci"]["precision"]
    assert entry["precision"] == 0.5 and 0.25 < low < 0.5 < high < 0.75


def test_bad_input():
    with pytest.raises(ValueError, match="unknown signal"):
        attribution_table(records(), SPANS, signals=["audio"])
    with pytest.raises(ValueError, match="span lists"):
        attribution_table(records(), SPANS[:1])
    with pytest.raises(ValueError, match="finite"):
        attribution_table(records(scores=[[0.1, float("nan"), 0.2, 0.3], SCORES[1]]), SPANS)
