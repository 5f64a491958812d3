"""TW-GRPO token weights from intra-group divergence (METHOD 5).

For each prompt's group of G completions and each position t: ``l_i`` = the full-vocabulary log-prob vector of
completion i at t (the uniform distribution ``log(1/V)`` past the completion's end), ``mean_l = mean_i l_i``,
``D_t = mean_i sum_v (exp(d) - d - 1)`` with ``d = clamp(mean_l - l_i, -clamp, clamp)``. ``D`` is min-max
normalised over the group's positions where any row is valid (``n = 0`` everywhere if ``D`` is constant there,
e.g. identical completions), and the weight is ``w = 1 + (alpha - 1) * n``: in ``[1, alpha]`` on valid tokens,
0 on padding. The loss then uses ``token_weights=w`` with token-mean aggregation (see ``policy_loss``).
"""

from __future__ import annotations

import math

import torch

from videoktr.core.attribution import DEFAULT_CHUNK_SIZE

__all__ = ["tw_token_weights", "tw_token_weights_by_group"]


def _group_divergence(
    logits: torch.Tensor, valid: torch.Tensor, clamp: float, temperature: float, positions_per_chunk: int
) -> torch.Tensor:
    """D_t for one group; logits: (G, T, V), valid: (G, T) bool -> (T,) float."""
    n_rows, n_pos, vocab = logits.shape
    uniform = -math.log(vocab)
    pieces = []
    for start in range(0, n_pos, positions_per_chunk):
        chunk = logits[:, start : start + positions_per_chunk]
        dtype = torch.float64 if chunk.dtype == torch.float64 else torch.float32
        logp = torch.log_softmax(chunk.to(dtype) / temperature, dim=-1)  # (G, c, V)
        logp = torch.where(valid[:, start : start + positions_per_chunk, None], logp, uniform)
        d = (logp.mean(dim=0, keepdim=True) - logp).clamp(-clamp, clamp)
        pieces.append((torch.exp(d) - d - 1).sum(dim=-1).mean(dim=0))
    return torch.cat(pieces)


def _min_max(values: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """(T,) values normalised to [0, 1] over the ``active`` positions; 0 everywhere if they are all equal."""
    if not active.any():
        return torch.zeros_like(values)
    low, high = values[active].min(), values[active].max()
    if not high > low:
        return torch.zeros_like(values)
    return ((values - low) / (high - low)).clamp(0.0, 1.0)


def tw_token_weights(
    logits: torch.Tensor,
    valid: torch.Tensor,
    group_size: int,
    alpha: float = 1.7,
    clamp: float = 11.0,
    temperature: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """Per-token TW-GRPO weights (formula in the module docstring).

    The gradient flows through the weights when ``logits`` carries it (the authors' code); call it under
    ``torch.no_grad()`` (or on detached logits) for fixed weights.

    Args:
        logits: (N, T, V) policy logits at the completion positions, N = B * group_size, groups contiguous.
        valid: (N, T) completion mask.
        group_size: G, completions per prompt (divides N).
        alpha: weight of the most divergent position (1.7 in TW-GRPO).
        clamp: bound on ``|d|`` (11 in TW-GRPO).
        temperature: logits are divided by it.
        chunk_size: (row, position) pairs per full-vocabulary chunk; one group at a time, so memory stays at about
            ``chunk_size * V`` floats whatever the batch.

    Returns:
        (N, T) float32 weights (float64 for float64 logits): in ``[1, alpha]`` on valid tokens, 0 on padding.
    """
    if logits.dim() != 3 or valid.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be (N, T, V) and valid (N, T); got {tuple(logits.shape)} and {tuple(valid.shape)}"
        )
    n_rows = logits.shape[0]
    if group_size < 1 or n_rows % group_size != 0:
        raise ValueError(f"group_size must be >= 1 and divide the {n_rows} rows, got {group_size}")
    if not clamp > 0 or not temperature > 0 or chunk_size < 1:
        raise ValueError(
            f"clamp and temperature must be > 0 and chunk_size >= 1; got {clamp}, {temperature}, {chunk_size}"
        )
    valid = valid.bool()
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    weights = torch.zeros(valid.shape, dtype=dtype, device=logits.device)
    positions_per_chunk = max(1, chunk_size // group_size)
    for start in range(0, n_rows, group_size):
        rows = slice(start, start + group_size)
        divergence = _group_divergence(logits[rows], valid[rows], clamp, temperature, positions_per_chunk)
        normalised = _min_max(divergence, valid[rows].any(dim=0))
        row_weights = (1 + (alpha - 1) * normalised).to(dtype).expand(group_size, -1)
        weights[rows] = torch.where(valid[rows], row_weights, torch.zeros_like(row_weights))
    return weights


def tw_token_weights_by_group(
    logits: torch.Tensor, valid: torch.Tensor, group_ids: torch.Tensor, group_size: int, **kwargs
) -> torch.Tensor:
    """:func:`tw_token_weights` for rows in any order (e.g. after a trainer's shuffle), grouped by ``group_ids``.

    Gradient flows through the weights when ``logits`` carries it (the TW-GRPO authors' code).

    Args:
        logits: (N, T, V); valid: (N, T); group_ids: (N,) the prompt of each row.
        group_size: G; every group present must have exactly G rows here.
        **kwargs: ``alpha``, ``clamp``, ``temperature``, ``chunk_size`` of :func:`tw_token_weights`.

    Returns:
        (N, T) weights, row i's computed with the other rows of its group.
    """
    if group_ids.dim() != 1 or group_ids.numel() != logits.shape[0]:
        raise ValueError(f"group_ids must be (N,) with N = {logits.shape[0]}, got {tuple(group_ids.shape)}")
    _, counts = torch.unique(group_ids, return_counts=True)
    if (counts != group_size).any():
        raise ValueError(
            f"every group needs its {group_size} rows together; got group sizes {sorted(set(counts.tolist()))}"
        )
    order = torch.argsort(group_ids, stable=True)
    sorted_weights = tw_token_weights(logits[order], valid[order], group_size=group_size, **kwargs)
    return sorted_weights[torch.argsort(order)]
