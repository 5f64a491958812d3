"""Labels for Frame-Voyager: T-frame combinations of a record, each scored by the video LLM's loss on the answer.

For a record: decode M candidates, one vision pass (:mod:`videoktr.frames.features`), then every combination of
T/unit of the M/unit units (or K sampled ones, seeded by the record id) is fed to the LLM with the gold target
(the record's ``process`` + ``solution``, teacher forced); its label is the summed (or mean) negative log-likelihood
of the target tokens (``loss_form=sum|mean``), or (``loss_form=option_nll``) the gold option's negative log
probability normalised over the record's options at the first target token where their answers differ (see
:func:`option_nll`). Lower is better. A record whose losses span less than ``min_loss_spread`` is kept in the file
with ``kept: false`` (the model cannot tell its combinations apart) and not used for training; so is one whose
lowest loss is above ``max_best_loss`` when that is set (the model cannot answer it from any combination).
With ``label_source="oracle"`` the label is 0 for a combination satisfying the record's ``evidence_rule``, else 1.

Each label line: ``{problem_id, candidates, combinations: [[unit, ...], ...], losses, sufficient, spread, kept}``
(``sufficient`` only when the record has an ``evidence_rule``).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "combinations_for",
    "label_record",
    "combination_frames",
    "spearman",
    "label_agreement",
    "option_divergence",
    "option_nll",
]


def _record_seed(seed: int, record_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{record_id}".encode()).digest()[:8], "little")


def combinations_for(
    n_units: int, k_units: int, max_combinations: int, seed: int, record_id: str
) -> list[list[int]]:
    """All C(n, k) unit combinations (sorted, lexicographic) when <= K, else K distinct ones sampled uniformly
    with a generator seeded by (seed, record id): the same record always gets the same combinations."""
    total = math.comb(n_units, k_units)
    if total <= max_combinations:
        return [list(c) for c in itertools.combinations(range(n_units), k_units)]
    rng = np.random.default_rng(_record_seed(seed, record_id))
    seen: dict[tuple[int, ...], None] = {}
    while len(seen) < max_combinations:
        seen[tuple(sorted(int(u) for u in rng.choice(n_units, size=k_units, replace=False)))] = None
    return [list(c) for c in seen]


def combination_frames(candidates: Sequence[int], units: Sequence[int], unit: int) -> list[int]:
    """Frame indices (in the video) of a combination of candidate units, in time order."""
    return [int(candidates[u * unit + j]) for u in sorted(units) for j in range(unit)]


def _target_ids(processor, record: dict) -> list[int]:
    from videoktr.training.sft import sft_target

    tok = processor.tokenizer
    return tok(sft_target(record), add_special_tokens=False)["input_ids"]


def _option_records(record: dict) -> list[dict]:
    """The record once per other option: its solution's letter and, in its process, the first mention of the gold
    option's text replaced by that option's (``"A. red"`` -> letter ``A``, text ``red``)."""
    import re

    from videoktr.errors import UserError

    rid = record.get("problem_id")
    options = record.get("options") or []
    parsed = [re.match(r"\s*([A-Z])\s*[.)]\s*(.+?)\s*$", str(o)) for o in options]
    gold = re.search(r"<answer>\s*([A-Z])\s*</answer>", str(record.get("solution", "")))
    if len(options) < 2 or not all(parsed) or not gold:
        raise UserError(
            f"record {rid}: loss_form=option_nll needs >= 2 options 'A. text' and a solution '<answer>A</answer>'; "
            "use loss_form=sum for other records"
        )
    letters = {m.group(1): m.group(2) for m in parsed}
    if gold.group(1) not in letters:
        raise UserError(f"record {rid}: answer {gold.group(1)} is not one of the options {sorted(letters)}")
    gold_text = letters[gold.group(1)]
    out = []
    for letter, text in letters.items():
        if letter == gold.group(1):
            continue
        process = re.sub(rf"\b{re.escape(gold_text)}\b", text, str(record.get("process", "")), count=1)
        out.append({**record, "process": process, "solution": f"<answer>{letter}</answer>"})
    return out


def option_divergence(processor, record: dict) -> tuple[list[int], list[int]]:
    """For each other option, (position, token id) of the first target token where its target differs from the
    gold target (:func:`_option_records`): ``positions`` (O,), ``tokens`` (O,). Teacher forced on the gold target,
    the prefix before ``positions[o]`` is the same for both, so their log-probs there compare the two answers."""
    others = _option_records(record)
    gold = _target_ids(processor, record)
    positions, tokens = [], []
    for other in others:
        ids = _target_ids(processor, other)
        d = next((i for i, (a, b) in enumerate(zip(gold, ids)) if a != b), min(len(gold), len(ids)))
        if d >= len(gold) or d >= len(ids):
            from videoktr.errors import UserError

            raise UserError(f"record {record.get('problem_id')}: an option's target equals the gold target")
        positions.append(d)
        tokens.append(ids[d])
    return positions, tokens


def option_nll(logp: torch.Tensor, gold_ids: torch.Tensor, positions, tokens) -> torch.Tensor:
    """-log p(gold) / (p(gold) + sum_o p(o)) with each option compared at its divergence position.

    logp: (N, L, V) log-probs of the target positions; gold_ids: (L,) the gold target; positions, tokens: (O,).
    With margins m_o = logp[d_o, gold_{d_o}] - logp[d_o, tok_o] this is log(1 + sum_o exp(-m_o)) (N,): 0 when the
    model is sure of the gold option, log(O + 1) when the options are equally likely, large when it prefers another.
    """
    pos = torch.as_tensor(positions, dtype=torch.long)
    gold = logp[:, pos, gold_ids[pos]]  # (N, O)
    other = logp[:, pos, torch.as_tensor(tokens, dtype=torch.long)]  # (N, O)
    zero = torch.zeros(logp.shape[0], 1, dtype=logp.dtype)
    return torch.logsumexp(torch.cat([zero, other - gold], dim=1), dim=1)


@torch.no_grad()
def model_losses(
    model, processor, record: dict, candidate, combos: list[list[int]], cfg, template: str, sampling=None
):
    """(C,) teacher-forced losses of the gold target for each combination (one LM pass per chunk of combos)."""
    from videoktr.data.prompts import build_question
    from videoktr.data.video import DecodedVideo
    from videoktr.models.qwen2_5_vl import build_video_inputs, completion_logps

    video = candidate.video
    k = cfg.k_units
    # token layout of any T-frame combination: same frame count, size and rate
    first = combination_frames(video.frame_indices, list(range(k)), cfg.unit)
    positions = list(range(k * cfg.unit))
    sub = DecodedVideo(
        frames=video.frames[positions],
        sample_fps=len(first) / video.total_frames * video.source_fps,
        frame_indices=first,
        source_fps=video.source_fps,
        total_frames=video.total_frames,
        duration=video.duration,
        path=video.path,
    )
    inputs = build_video_inputs(processor, [build_question(record, template)], [sub], sampling=sampling)
    target = torch.tensor([_target_ids(processor, record)])
    divergence = option_divergence(processor, record) if cfg.loss_form == "option_nll" else None
    losses = []
    device = next(model.parameters()).device
    for begin in range(0, len(combos), cfg.label_batch_size):
        chunk = combos[begin : begin + cfg.label_batch_size]
        n = len(chunk)
        rows = {
            "input_ids": inputs["input_ids"].repeat(n, 1),
            "attention_mask": inputs["attention_mask"].repeat(n, 1),
            "mm_token_type_ids": inputs["mm_token_type_ids"].repeat(n, 1),
            "video_grid_thw": inputs["video_grid_thw"].repeat(n, 1),
            "second_per_grid_ts": torch.as_tensor(inputs["second_per_grid_ts"]).repeat(n),
        }
        rows = {key: value.to(device) for key, value in rows.items()}
        feats = [
            candidate.unit_features[sorted(c)].reshape(-1, candidate.unit_features.shape[-1]) for c in chunk
        ]
        feats = [f.to(device=device, dtype=next(model.parameters()).dtype) for f in feats]
        ids = target.repeat(n, 1).to(device)
        out = completion_logps(
            model, rows, ids, torch.ones_like(ids), video_features=feats, with_logits=divergence is not None
        )
        if divergence is not None:
            logp = torch.log_softmax(out["logits"].float(), dim=-1).cpu()
            losses.append(option_nll(logp, target[0], *divergence))
            continue
        nll = -out["logp"].float()
        losses.append(nll.sum(-1) if cfg.loss_form == "sum" else nll.mean(-1))
    return torch.cat(losses).cpu()


def label_record(model, processor, record: dict, candidate, cfg, template: str, sampling=None) -> dict:
    """The label line of one record (see the module docstring)."""
    from videoktr.frames.sparse import is_sufficient

    rid = str(record.get("problem_id"))
    candidates = list(candidate.video.frame_indices)
    combos = combinations_for(cfg.n_units, cfg.k_units, cfg.max_combinations, cfg.seed, rid)
    rule = record.get("evidence_rule")
    sufficient = None
    if rule is not None:
        sufficient = [is_sufficient(rule, combination_frames(candidates, c, cfg.unit)) for c in combos]
    if cfg.label_source == "oracle":
        if sufficient is None:
            from videoktr.errors import UserError

            raise UserError(
                f"record {rid}: label_source=oracle needs an evidence_rule; use label_source=model"
            )
        losses = [0.0 if s else 1.0 for s in sufficient]
    else:
        losses = [
            round(float(x), 5)
            for x in model_losses(model, processor, record, candidate, combos, cfg, template, sampling)
        ]
    spread = max(losses) - min(losses)
    line = {
        "problem_id": rid,
        "candidates": candidates,
        "combinations": combos,
        "losses": losses,
        "spread": round(spread, 5),
        "kept": spread >= cfg.min_loss_spread
        and (cfg.max_best_loss is None or min(losses) <= cfg.max_best_loss),
    }
    if sufficient is not None:
        line["sufficient"] = sufficient
    return line


def _ranks(values: Sequence[float]) -> np.ndarray:
    """Average ranks (ties share their mean rank), 0-based."""
    array = np.asarray(values, dtype=float)
    order = np.argsort(array, kind="stable")
    ranks = np.empty(len(array))
    sorted_values = array[order]
    i = 0
    while i < len(array):
        j = i
        while j + 1 < len(array) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation with average ranks for ties; None when either side is constant."""
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def label_agreement(lines: list[dict]) -> dict:
    """How well the label loss agrees with oracle sufficiency, over records with both kinds of combinations.

    ``spearman``: mean over records of rho(-loss, sufficient); ``best_is_sufficient``: fraction of records whose
    lowest-loss combination is sufficient (chance: ``sufficient_rate``)."""
    rhos, best, rate = [], [], []
    for line in lines:
        suff = line.get("sufficient")
        if not suff or all(suff) or not any(suff):
            continue
        rho = spearman([-x for x in line["losses"]], [float(s) for s in suff])
        if rho is not None:
            rhos.append(rho)
        best.append(bool(suff[int(np.argmin(line["losses"]))]))
        rate.append(sum(suff) / len(suff))
    if not rhos:
        return {"n_records": 0, "spearman": None, "best_is_sufficient": None, "sufficient_rate": None}
    return {
        "n_records": len(rhos),
        "spearman": round(float(np.mean(rhos)), 4),
        "best_is_sufficient": round(float(np.mean(best)), 4),
        "sufficient_rate": round(float(np.mean(rate)), 4),
    }
