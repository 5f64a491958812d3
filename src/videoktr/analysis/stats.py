"""Selection statistics and attribution precision over many completions' token records; paired bootstrap
intervals of accuracy differences between methods evaluated on the same questions (:func:`paired_bootstrap`).

``records_list`` is a list of completions, each a ``list[TokenRecord]`` holding its valid tokens only (padding
removed), all built with the same signal names. Counts pool tokens over all completions (a long completion weighs
more than a short one), which is how the trainer's ``ktr/selected_frac/*`` metrics count valid tokens too.

A fraction whose denominator is zero is ``None`` (never NaN, never 0): e.g. precision when a signal selected no token.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import Any

from videoktr.analysis.tokens import TokenRecord, record_signals

__all__ = ["selection_stats", "evidence_mask", "attribution_precision", "precision_table", "paired_bootstrap"]

Span = tuple[int, int, str]


def _ratio(num: int | float, den: int | float) -> float | None:
    return None if den == 0 else num / den


def _word(rec: TokenRecord) -> str:
    return rec.text.strip()


def _top(words: Counter, top_k: int) -> list[tuple[str, int]]:
    return sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]


def selection_stats(records_list: Sequence[Sequence[TokenRecord]], top_k: int = 10) -> dict[str, Any]:
    """Fractions, overlaps, scores and frequent words of the selected tokens.

    records_list: (N completions) x (T_i records). Returns a nested dict (flatten with "/" for metric names):
    - ``n_completions``, ``n_tokens``: counts (all tokens of all completions).
    - ``selected_frac/{signal}``, ``selected_frac/union``: selected tokens / all tokens.
    - ``overlap/{a}_{b}``: Jaccard, tokens selected by both a and b / tokens selected by either (a, b in signal
      order); the same definition as the trainer's ``ktr/overlap/{a}_{b}`` (which logs 0 where this gives None).
    - ``both_frac/{a}_{b}``: tokens selected by both a and b / all tokens.
    - ``mean_score/{signal}``: mean score over all tokens (only for signals with scores on every token).
    - ``union_per_completion/{mean,min,max}``: key-token count per completion.
    - ``top_words/{signal or union}``: up to ``top_k`` (word, count) among selected tokens, most frequent first;
      ``top_unselected_words``: the same among tokens outside the union. A "word" is the token piece with
      surrounding whitespace stripped; whitespace-only pieces are not counted.
    Every ratio with an empty denominator is None.
    """
    signals = record_signals(records_list)
    flat = [rec for records in records_list for rec in records]
    n = len(flat)
    sets = {s: [rec.selected[s] for rec in flat] for s in signals}
    sets["union"] = [rec.union for rec in flat]

    out: dict[str, Any] = {"n_completions": len(records_list), "n_tokens": n}
    out["selected_frac"] = {name: _ratio(sum(m), n) for name, m in sets.items()}
    out["overlap"], out["both_frac"] = {}, {}
    for a, b in combinations(signals, 2):
        both = sum(x and y for x, y in zip(sets[a], sets[b]))
        either = sum(x or y for x, y in zip(sets[a], sets[b]))
        out["overlap"][f"{a}_{b}"] = _ratio(both, either)
        out["both_frac"][f"{a}_{b}"] = _ratio(both, n)
    scored = [s for s in signals if flat and all(s in rec.scores for rec in flat)]
    out["mean_score"] = {s: sum(rec.scores[s] for rec in flat) / n for s in scored}
    counts = [sum(rec.union for rec in records) for records in records_list]
    out["union_per_completion"] = {
        "mean": _ratio(sum(counts), len(counts)),
        "min": min(counts) if counts else None,
        "max": max(counts) if counts else None,
    }
    out["top_words"] = {
        name: _top(Counter(_word(r) for r, m in zip(flat, mask) if m and _word(r)), top_k)
        for name, mask in sets.items()
    }
    out["top_unselected_words"] = _top(Counter(_word(r) for r in flat if not r.union and _word(r)), top_k)
    return out


def _check_spans(spans: Sequence[Span], text_len: int, i: int) -> None:
    for span in spans:
        start, end, kind = span
        if not (0 <= start < end <= text_len) or not isinstance(kind, str):
            raise ValueError(
                f"completion {i}: evidence span {span!r} is not (start, end, kind) with 0 <= start < end <= "
                f"{text_len} (the completion's length); labels must come from the same text as the records"
            )


def evidence_mask(records: Sequence[TokenRecord], spans: Sequence[Span], kind: str) -> list[bool]:
    """(T,) bool: token's character range [start, end) intersects a span of ``kind`` and it is not whitespace-only.

    spans: (start, end, kind) character spans (end exclusive) on the completion text ``"".join(pieces)``, e.g. from
    ``videoktr.data.synthetic.label_evidence_words(text)``. A piece " red" covering [4, 8) overlaps the word span
    "red" [5, 8); empty and whitespace-only pieces are never evidence.
    """
    ranges = [(s, e) for s, e, k in spans if k == kind]
    return [
        bool(rec.text.strip()) and any(rec.start < e and s < rec.end for s, e in ranges) for rec in records
    ]


def attribution_precision(
    records_list: Sequence[Sequence[TokenRecord]],
    evidence_labels: Sequence[Sequence[Span]],
    signal: str,
    kind: str,
) -> dict[str, Any]:
    """Of the tokens selected by ``signal``, the fraction that are evidence of ``kind``; and the base rate.

    records_list: (N completions) x (T_i records); evidence_labels: (N) lists of (start, end, kind) spans on the same
    completion texts. signal: a signal name of the records, or "union" (the key-token mask). A token is evidence
    when ``evidence_mask`` says so (char-range intersection, whitespace-only pieces never).
    Returns {"precision": n_selected_evidence / n_selected, "base_rate": n_evidence / n_tokens, "n_selected",
    "n_tokens", "n_evidence", "n_selected_evidence"}; precision is None when the signal selected no token,
    base_rate None when there are no tokens. Precision above base rate means the signal finds that evidence
    better than picking tokens at random.
    """
    if len(evidence_labels) != len(records_list):
        raise ValueError(
            f"{len(evidence_labels)} label lists for {len(records_list)} completions; pass one list per completion"
        )
    names = [*record_signals(records_list), "union"]
    if signal not in names:
        raise ValueError(f"unknown signal '{signal}'; valid: {', '.join(names)}")
    n_tokens = n_selected = n_evidence = n_both = 0
    for i, (records, spans) in enumerate(zip(records_list, evidence_labels)):
        _check_spans(spans, records[-1].end if records else 0, i)
        for rec, is_ev in zip(records, evidence_mask(records, spans, kind)):
            chosen = rec.union if signal == "union" else rec.selected[signal]
            n_tokens += 1
            n_selected += chosen
            n_evidence += is_ev
            n_both += chosen and is_ev
    return {
        "precision": _ratio(n_both, n_selected),
        "base_rate": _ratio(n_evidence, n_tokens),
        "n_selected": n_selected,
        "n_tokens": n_tokens,
        "n_evidence": n_evidence,
        "n_selected_evidence": n_both,
    }


def precision_table(
    records_list: Sequence[Sequence[TokenRecord]],
    evidence_labels: Sequence[Sequence[Span]],
    kinds: Sequence[str] = ("visual", "temporal"),
    signals: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """``attribution_precision`` for every (signal, kind), keyed "{signal}/{kind}" (e.g. "visual/visual").

    signals: default every signal of the records plus "union".
    """
    signals = [*record_signals(records_list), "union"] if signals is None else list(signals)
    return {
        f"{signal}/{kind}": attribution_precision(records_list, evidence_labels, signal, kind)
        for signal in signals
        for kind in kinds
    }


def _bootstrap_replicates(diff: Any, n_boot: int, rng: Any, resample_seeds: bool, chunk: int = 1000) -> Any:
    """(n_boot,) replicate means of ``diff`` (S, N): each replicate weights the N questions by multinomial counts
    of N draws with replacement (the same draw for every seed), and with ``resample_seeds`` the S seeds likewise."""
    import numpy as np

    n_seeds, n = diff.shape
    out = np.empty(n_boot)
    for begin in range(0, n_boot, chunk):
        size = min(chunk, n_boot - begin)
        if resample_seeds:
            seed_w = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=size) / n_seeds  # (b, S)
            per_question = seed_w @ diff  # (b, N): each replicate's seed-weighted mean per question
        else:
            per_question = np.broadcast_to(diff.mean(axis=0), (size, n))
        question_w = rng.multinomial(n, np.full(n, 1.0 / n), size=size) / n  # (b, N)
        out[begin : begin + size] = (per_question * question_w).sum(axis=1)
    return out


def paired_bootstrap(
    a: Sequence[Sequence[float]],
    b: Sequence[Sequence[float]] | None = None,
    *,
    n_boot: int = 10000,
    level: float = 0.95,
    resample_seeds: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean of ``a - b`` over seeds and questions, with a percentile bootstrap interval.

    a, b: (S, N) per-question outcomes (1/0 correct, or partial credit) of S training seeds on the same N held-out
    questions in the same order; row s of ``a`` is paired with row s of ``b`` (the same RL seed from the same SFT
    checkpoint: the same prompt order). ``b=None`` gives the interval of ``a``'s own mean.
    Seeds are combined by averaging: the statistic is mean_s mean_i (a[s, i] - b[s, i]). Each of ``n_boot``
    replicates resamples the N questions with replacement, the same indices for every seed and for both arms
    (pairing removes the question-difficulty variance both methods share). ``resample_seeds=False`` keeps the S
    seeds fixed: the interval covers test-question sampling given these trained seeds. ``resample_seeds=True``
    also resamples the S seed pairs with replacement (two-level bootstrap: seed-to-seed training variance too; with
    S = 3 it has only 10 distinct seed multisets, so read it as a rough guide).
    Returns {"mean", "low", "high", "half_width" ((high - low) / 2), "n_seeds", "n_questions", "n_boot",
    "resampled" ("questions" or "questions+seeds")}; deterministic for a given ``seed``.
    """
    import numpy as np

    arr_a = np.asarray(a, dtype=float)
    arr_b = None if b is None else np.asarray(b, dtype=float)
    if arr_a.ndim != 2 or arr_a.size == 0 or (arr_b is not None and arr_b.shape != arr_a.shape):
        raise ValueError(
            f"paired_bootstrap: a{arr_a.shape} and b{None if arr_b is None else arr_b.shape} must both be "
            "(seeds, questions) with at least one of each, in the same question order"
        )
    diff = arr_a if arr_b is None else arr_a - arr_b
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"paired_bootstrap: level={level} must be in (0, 1) and n_boot={n_boot} >= 1")
    reps = _bootstrap_replicates(diff, n_boot, np.random.default_rng(seed), resample_seeds)
    low, high = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return {
        "mean": float(diff.mean()),
        "low": float(low),
        "high": float(high),
        "half_width": float(high - low) / 2,
        "n_seeds": int(diff.shape[0]),
        "n_questions": int(diff.shape[1]),
        "n_boot": n_boot,
        "resampled": "questions+seeds" if resample_seeds else "questions",
    }
