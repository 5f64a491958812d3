"""Training the querier on labelled combinations (pairwise ranking), and scoring candidates with it.

A step samples ``records_per_step`` kept records and, for each, ``pairs_per_record`` pairs (c_w, c_l) of its
labelled combinations with loss(c_l) - loss(c_w) >= ``pair_margin`` (c_w among its lowest-loss ``winner_fraction``
of combinations); the loss is the mean of
``-log sigmoid(r(c_w) - r(c_l))`` (:func:`videoktr.frames.querier.pairwise_ranking_loss`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from videoktr.errors import UserError
from videoktr.frames.querier import Querier, QuerierConfig, combination_scores, pairwise_ranking_loss

__all__ = ["pad_queries", "train_querier", "score_units"]


def pad_queries(queries: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (L_i, D) question embeddings -> (B, L, D) and a (B, L) bool mask of real tokens."""
    length = max(q.shape[0] for q in queries)
    out = torch.zeros(len(queries), length, queries[0].shape[1])
    mask = torch.zeros(len(queries), length, dtype=torch.bool)
    for i, q in enumerate(queries):
        out[i, : q.shape[0]] = q
        mask[i, : q.shape[0]] = True
    return out, mask


def _pairs(losses: list[float], margin: float, winner_fraction: float = 1.0) -> np.ndarray:
    """(P, 2) (winner, loser) combination indices with loss[loser] - loss[winner] >= margin (and > 0); winners only
    among the ceil(winner_fraction * C) lowest losses (ties at the cut included)."""
    x = np.asarray(losses)
    ok = x[None, :] - x[:, None] >= max(margin, 1e-12)
    if winner_fraction < 1.0:
        cut = np.sort(x)[max(1, math.ceil(winner_fraction * len(x))) - 1]
        ok &= (x <= cut)[:, None]
    winners, losers = np.nonzero(ok)
    return np.stack([winners, losers], axis=1)


def train_querier(features: dict, lines: list[dict], cfg, fingerprint: str, model_path: str, log=None):
    """Train a querier; ``features``: problem id -> :class:`CandidateVideo`; ``lines``: label lines.

    Returns (querier, history of {step, loss, pair_accuracy})."""
    kept = [line for line in lines if line.get("kept", True)]
    data = []
    for line in kept:
        pairs = _pairs(line["losses"], cfg.pair_margin, cfg.winner_fraction)
        if len(pairs):
            data.append((line, pairs))
    if not data:
        raise UserError(
            f"no labelled record has a pair of combinations whose losses differ by >= pair_margin={cfg.pair_margin} "
            f"({len(lines)} records, {len(kept)} kept by min_loss_spread={cfg.min_loss_spread}); label more "
            "records, lower the margin/spread, or check the labelling model (is it trained?)"
        )
    missing = [line["problem_id"] for line, _ in data if line["problem_id"] not in features]
    if missing:
        raise ValueError(f"no features for labelled records {missing[:3]}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    first = features[data[0][0]["problem_id"]]
    qcfg = QuerierConfig(
        feature_dim=first.pooled().shape[-1],
        query_dim=first.query_embeddings.shape[-1],
        n_units=cfg.n_units,
        hidden_size=cfg.hidden_size,
        layers=cfg.layers,
        arch=cfg.arch,
        model_fingerprint=fingerprint,
        model_path=model_path,
        candidates=cfg.candidates,
        unit=cfg.unit,
    )
    querier = Querier(qcfg)
    units = torch.stack([features[line["problem_id"]].pooled() for line, _ in data])  # (R, n, F)
    queries, qmask = pad_queries([features[line["problem_id"]].query_embeddings for line, _ in data])
    combos = [torch.tensor(line["combinations"]) for line, _ in data]
    optimiser = torch.optim.AdamW(querier.parameters(), lr=cfg.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.train_steps) / cfg.train_steps))
    )
    history = []
    querier.train()
    for step in range(cfg.train_steps):
        batch = rng.choice(len(data), size=min(cfg.records_per_step, len(data)), replace=False)
        winners, losers = [], []
        for r in batch:
            pairs = data[r][1]
            take = pairs[rng.integers(0, len(pairs), size=cfg.pairs_per_record)]
            winners.append(combos[r][take[:, 0]])
            losers.append(combos[r][take[:, 1]])
        idx = torch.as_tensor(batch)
        scores = querier(units[idx], queries[idx], qmask[idx])
        rw = combination_scores(scores, torch.stack(winners))
        rl = combination_scores(scores, torch.stack(losers))
        loss = pairwise_ranking_loss(rw, rl)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 20 == 0 or step == cfg.train_steps - 1:
            entry = {
                "step": step,
                "loss": round(float(loss.detach()), 5),
                "pair_accuracy": round(float((rw > rl).float().mean()), 4),
            }
            history.append(entry)
            if log is not None:
                log(entry)
    querier.eval()
    return querier, history


@torch.no_grad()
def score_units(querier: Querier, candidate) -> torch.Tensor:
    """(n,) unit scores of one record's candidates."""
    query, mask = pad_queries([candidate.query_embeddings])
    return querier(candidate.pooled()[None], query, mask)[0]
