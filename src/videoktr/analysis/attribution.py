"""Threshold-free attribution metrics: how well each signal's token scores find the tokens of a label.

Inputs are the token records of many completions (``videoktr.analysis.tokens``: per signal a selection mask and
usually a score) and, per completion, character spans (start, end, label) of its labelled words, e.g. the
counterfactual labels of :mod:`videoktr.data.counterfactual` ("order", "content"; every other token is "filler"),
or None for an unlabelled completion (left out). A token has a label when it overlaps a span of that label and is
not whitespace-only (``videoktr.analysis.stats.evidence_mask``); a token overlapping both an ``order`` and a
``content`` span is ``order`` (labels are exclusive, in the order of ``labels``).

For each signal and label, pooling the tokens of all labelled completions:

- ``auroc``: probability that a random token of the label scores higher than a random other token (ties count
  one half; Mann-Whitney U / (P * N)). 0.5 = no better than chance; None without scores or without both classes.
- ``precision``: of the tokens the signal selected (its mask: the selected fraction), the share with the label.
- ``base_rate``: the share of all tokens with the label (the precision of selecting at random).
- ``lift``: precision / base_rate (1 = chance).
- ``ci``: {auroc, precision, lift: [low, high]} percentile intervals from a bootstrap over completions (completions
  drawn with replacement, ``n_boot`` times; a completion's tokens stay together), with ``level`` and ``n_boot``.

Every ratio with an empty denominator is None (never NaN).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videoktr.analysis.stats import evidence_mask
from videoktr.analysis.tokens import TokenRecord, record_signals

__all__ = ["token_labels", "weighted_auroc", "attribution_table", "selection_attribution"]

Span = tuple[int, int, str]


def token_labels(records: Sequence[TokenRecord], spans: Sequence[Span], labels: Sequence[str]) -> list[str]:
    """(T,) label of each token: the first of ``labels`` whose spans it overlaps, else "filler"."""
    masks = [evidence_mask(records, spans, label) for label in labels]
    return [next((lab for lab, m in zip(labels, masks) if m[t]), "filler") for t in range(len(records))]


def weighted_auroc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> float | None:
    """AUROC of ``scores`` for ``positive`` tokens with token ``weights`` (bootstrap multiplicities).

    scores: (n,) float; positive: (n,) bool; weights: (n,) float >= 0. Ties count one half. None when the
    positive or the negative weight is zero.
    """
    return _auroc_ranked(np.unique(scores, return_inverse=True)[1], positive, weights)


def _auroc_ranked(inverse: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> float | None:
    """``weighted_auroc`` from ``inverse`` (n,): the rank of each score among the distinct scores."""
    size = int(inverse.max()) + 1 if len(inverse) else 0
    pos = np.bincount(inverse, weights * positive, minlength=size)
    neg = np.bincount(inverse, weights * ~positive, minlength=size)
    p, n = pos.sum(), neg.sum()
    if p == 0 or n == 0:
        return None
    below = np.cumsum(neg) - neg  # weight of negatives scoring strictly lower
    return float((pos * (below + 0.5 * neg)).sum() / (p * n))


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else float(num / den)


def _flatten(records_list, spans_list, signals, labels):
    """Token arrays of the labelled completions: completion index, label, per-signal selected and score."""
    comp, lab, sel, score = [], [], {s: [] for s in signals}, {s: [] for s in signals}
    scored = set(signals)
    for i, (records, spans) in enumerate(zip(records_list, spans_list)):
        if spans is None:
            continue
        comp += [i] * len(records)
        lab += token_labels(records, spans, labels)
        for s in signals:
            sel[s] += [rec.union if s == "union" else rec.selected[s] for rec in records]
            if s in scored and all(s in rec.scores for rec in records):
                score[s] += [rec.scores[s] for rec in records]
            else:
                scored.discard(s)
    arrays = {
        "comp": np.asarray(comp, dtype=np.int64),
        "label": np.asarray(lab, dtype=object),
        "selected": {s: np.asarray(sel[s], dtype=bool) for s in signals},
        "rank": {},
    }
    for s in signals:
        values = np.asarray(score[s], dtype=np.float64)
        if s not in scored:
            continue
        if not np.isfinite(values).all():
            raise ValueError(
                f"signal '{s}': scores must be finite; {int((~np.isfinite(values)).sum())} are not"
            )
        arrays["rank"][s] = np.unique(values, return_inverse=True)[1]
    return arrays


def _point(arrays, signal: str, positive: np.ndarray, weights: np.ndarray) -> dict[str, float | None]:
    selected = arrays["selected"][signal]
    base_rate = _ratio((weights * positive).sum(), weights.sum())
    precision = _ratio((weights * (positive & selected)).sum(), (weights * selected).sum())
    rank = arrays["rank"].get(signal)
    return {
        "auroc": None if rank is None else _auroc_ranked(rank, positive, weights),
        "precision": precision,
        "base_rate": base_rate,
        "lift": None if precision is None or not base_rate else precision / base_rate,
    }


def _interval(values: list[float | None], level: float) -> list[float] | None:
    kept = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(kept) == 0:
        return None
    tail = 50 * (1 - level)
    return [float(np.percentile(kept, tail)), float(np.percentile(kept, 100 - tail))]


def attribution_table(
    records_list: Sequence[Sequence[TokenRecord]],
    spans_list: Sequence[Sequence[Span] | None],
    labels: Sequence[str] = ("order", "content"),
    signals: Sequence[str] | None = None,
    n_boot: int = 500,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """{signal: {label: {auroc, precision, base_rate, lift, ci, n_tokens, n_label, n_selected}}} (module doc).

    records_list: (N completions) x (T_i records); spans_list: (N) label spans on the same texts, None = unlabelled
    (left out). signals: default every signal of the records plus "union" (the key-token mask, no score).
    n_tokens/n_label/n_selected are token counts over the labelled completions (no resampling).
    """
    if len(spans_list) != len(records_list):
        raise ValueError(f"{len(spans_list)} span lists for {len(records_list)} completions; pass one each")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"n_boot={n_boot} must be >= 1 and level={level} in (0, 1)")
    names = [*record_signals(records_list), "union"]
    signals = names if signals is None else list(signals)
    unknown = [s for s in signals if s not in names]
    if unknown:
        raise ValueError(f"unknown signal(s) {unknown}; valid: {', '.join(names)}")
    arrays = _flatten(records_list, spans_list, signals, labels)
    positives = {label: arrays["label"] == label for label in labels}
    pairs = [(signal, label) for signal in signals for label in labels]
    ones = np.ones(len(arrays["comp"]))
    boot: dict[tuple[str, str], list[dict]] = {pair: [] for pair in pairs}
    rng = np.random.default_rng(seed)
    n_comp = len(records_list)
    for _ in range(n_boot if len(ones) else 0):
        # token weights: how often each token's completion was drawn
        weights = np.bincount(rng.integers(0, n_comp, n_comp), minlength=n_comp)[arrays["comp"]]
        for signal, label in pairs:
            boot[signal, label].append(_point(arrays, signal, positives[label], weights.astype(np.float64)))
    table: dict[str, dict[str, dict[str, Any]]] = {signal: {} for signal in signals}
    for signal, label in pairs:
        entry: dict[str, Any] = _point(arrays, signal, positives[label], ones)
        draws = boot[signal, label]
        entry["ci"] = {
            key: _interval([d[key] for d in draws], level) for key in ("auroc", "precision", "lift")
        }
        entry["ci"].update(level=level, n_boot=n_boot)
        entry["n_tokens"] = len(ones)
        entry["n_label"] = int(positives[label].sum())
        entry["n_selected"] = int(arrays["selected"][signal].sum())
        table[signal][label] = entry
    return table


def selection_attribution(
    path: str | Path, tokenizer: Any, kinds: Sequence[str], records_limit: int = 4000, n_boot: int = 500
) -> tuple[dict[str, Any], list[list[TokenRecord]]]:
    """Each signal against the synthetic ground truth over the last ``records_limit`` scored completions of a
    run's ``selection.jsonl`` (``path``; a missing file gives ({}, [])), decoded with ``tokenizer``.

    Returns ({"table": :func:`attribution_table` on the counterfactual labels of ``kinds``' templates (content,
    order), "labels": completion counts per labelling status and the kinds, "precision": the word-lexicon view
    ({signal}/{kind}: precision, base_rate, n_selected), "selection": ``selection_stats``}, the token records).
    """
    from videoktr.analysis.stats import precision_table, selection_stats
    from videoktr.analysis.tokens import pieces_from_ids, token_records
    from videoktr.data.counterfactual import label_completions
    from videoktr.data.synthetic import label_evidence_words
    from videoktr.training.selection import read_selection_records

    path = Path(path)
    rows = [r for r in read_selection_records(path) if not r["skipped"]] if path.is_file() else []
    records_list, texts = [], []
    for row in rows[-records_limit:]:
        pieces = pieces_from_ids(tokenizer, row["completion_ids"])
        records_list.append(token_records(pieces, row["masks"], row["scores"], union=row["union"]))
        texts.append("".join(pieces))
    if not records_list:
        return {}, []
    lexicon = precision_table(records_list, [label_evidence_words(t) for t in texts])
    keep = {
        key: {k: entry[k] for k in ("precision", "base_rate", "n_selected")}
        for key, entry in lexicon.items()
        if key.split("/")[0] in ("visual", "temporal", "entropy", "union")
    }
    labelled, counts = label_completions(texts, kinds)
    spans = [lt.spans if lt.labelled else None for lt in labelled]
    out = {
        "table": attribution_table(records_list, spans, labels=("content", "order"), n_boot=n_boot),
        "labels": {**counts, "kinds": list(kinds)},
        "precision": keep,
        "selection": selection_stats(records_list),
    }
    return out, records_list
