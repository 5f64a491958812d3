"""Key-token selection (METHOD 2): top-fraction masks per signal, their union, selection metrics, soft weights.

Shapes: ``N`` rows (B prompts x G completions, the G completions of a prompt are contiguous rows), ``T``
completion positions. ``valid``: (N, T) bool/int, 1 on completion tokens (through EOS), 0 on padding.

Top-fraction rule (one *scope* at a time, e.g. one prompt's group): ``n`` = number of valid tokens in the scope,
``k = ceil(fraction * n)`` (with float error removed, so 0.2 * 10 gives 2), threshold = the k-th largest valid
score, keep the valid tokens whose score is >= threshold. Ties at the threshold are all kept, so more than ``k``
tokens can be kept. ``fraction = 0`` keeps nothing, ``fraction = 1`` keeps every valid token, padding is never
kept, and a scope with no valid token keeps nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

import torch
import torch.distributed as dist

from videoktr.core.registry import Registry

__all__ = [
    "COMBINE_MODES",
    "SELECTION_SCOPES",
    "SOFT_WEIGHT_SCHEMES",
    "key_token_mask",
    "selection_metrics",
    "soft_token_weights",
    "top_fraction_mask",
]

ScopeFn = Callable[[torch.Tensor, torch.Tensor, float, "int | None"], torch.Tensor]
SELECTION_SCOPES: Registry[ScopeFn] = Registry("selection scope")
SOFT_WEIGHT_SCHEMES: Registry[Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = Registry(
    "soft weighting scheme"
)
COMBINE_MODES = ("union", "intersection")

_K_DECIMALS = 9  # fraction * n is rounded to this many decimals before ceil (0.07 * 100 = 7.000000000000001)


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(
            f"fraction must be in [0, 1] (0 keeps no token, 1 keeps every valid token), got {fraction}"
        )


def _num_kept(fraction: float, n: torch.Tensor) -> torch.Tensor:
    """k = ceil(fraction * n), robust to float error; n: (S,) int counts -> (S,) int64."""
    counts = n.detach().to(
        "cpu", torch.int64
    )  # float64 arithmetic on CPU (not every accelerator has float64)
    raw = torch.round(counts.to(torch.float64) * fraction, decimals=_K_DECIMALS)
    return torch.ceil(raw).to(torch.int64).clamp(max=counts).to(n.device)


def _row_threshold_mask(scores: torch.Tensor, valid: torch.Tensor, fraction: float) -> torch.Tensor:
    """Top-fraction mask with each row of ``scores`` (S, M) as one scope; valid: (S, M) bool -> (S, M) bool."""
    n = valid.sum(dim=1)
    k = _num_kept(fraction, n)
    lowest = torch.finfo(scores.dtype).min if scores.is_floating_point() else torch.iinfo(scores.dtype).min
    ranked = torch.where(valid, scores, torch.full_like(scores, lowest))
    ranked = ranked.sort(dim=1, descending=True).values
    threshold = ranked.gather(1, (k - 1).clamp(min=0).unsqueeze(1))
    return valid & (scores >= threshold) & (k > 0).unsqueeze(1)


@SELECTION_SCOPES.register("sequence")
def _sequence_scope(scores: torch.Tensor, valid: torch.Tensor, fraction: float, group_size: int | None):
    return _row_threshold_mask(scores, valid, fraction)


@SELECTION_SCOPES.register("group")
def _group_scope(scores: torch.Tensor, valid: torch.Tensor, fraction: float, group_size: int | None):
    n_rows, n_pos = scores.shape
    if group_size is None or group_size < 1 or n_rows % group_size != 0:
        raise ValueError(
            f"scope 'group' needs group_size (completions per prompt) >= 1 dividing the {n_rows} rows, "
            f"got group_size={group_size}"
        )
    grouped = (t.reshape(n_rows // group_size, group_size * n_pos) for t in (scores, valid))
    return _row_threshold_mask(*grouped, fraction).reshape(n_rows, n_pos)


def _gather_valid_scores(local: torch.Tensor) -> torch.Tensor:
    """All ranks' valid scores concatenated in rank order; local: (n_local,) -> (n_total,)."""
    world = dist.get_world_size()
    count = torch.tensor([local.numel()], dtype=torch.int64, device=local.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    if max(sizes) == 0:
        return local
    padded = torch.zeros(max(sizes), dtype=local.dtype, device=local.device)
    padded[: local.numel()] = local
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:size] for g, size in zip(gathered, sizes)])


@SELECTION_SCOPES.register("batch")
def _batch_scope(scores: torch.Tensor, valid: torch.Tensor, fraction: float, group_size: int | None):
    """One scope over the whole batch; with torch.distributed initialised, over the batches of all ranks."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        if scores.numel() == 0:
            return torch.zeros_like(valid)
        return _row_threshold_mask(scores.reshape(1, -1), valid.reshape(1, -1), fraction).reshape(
            scores.shape
        )
    everything = _gather_valid_scores(scores[valid].contiguous())
    if everything.numel() == 0:  # no eligible token on any rank: nothing is kept (every rank agrees)
        return torch.zeros_like(valid)
    ones = torch.ones_like(everything, dtype=torch.bool)
    kept = _row_threshold_mask(everything.unsqueeze(0), ones.unsqueeze(0), fraction)
    if not kept.any():
        return torch.zeros_like(valid)
    threshold = everything[kept[0]].min()  # the k-th largest score: every rank computes the same value
    return valid & (scores >= threshold)


def _check_scores(scores: torch.Tensor, valid: torch.Tensor, what: str) -> torch.Tensor:
    if scores.dim() != 2 or scores.shape != valid.shape:
        raise ValueError(
            f"{what} must have shape (N, T) equal to valid {tuple(valid.shape)}, got {tuple(scores.shape)}"
        )
    valid = valid.bool()
    if scores.is_floating_point() and torch.isnan(scores[valid]).any():
        raise ValueError(f"{what} has NaN at valid positions; fix the attribution pass that produced it")
    return valid


def top_fraction_mask(
    scores: torch.Tensor,
    valid: torch.Tensor,
    fraction: float,
    scope: str = "group",
    group_size: int | None = None,
) -> torch.Tensor:
    """Keep the top ``fraction`` of valid tokens by score within each scope (rule in the module docstring).

    Args:
        scores: (N, T) importance score per token (padding values are ignored).
        valid: (N, T) bool/int completion mask.
        fraction: in [0, 1].
        scope: a name in :data:`SELECTION_SCOPES`: ``group`` (all valid tokens of the ``group_size`` contiguous
            rows of one prompt), ``sequence`` (each row), ``batch`` (all valid tokens of the batch; when
            torch.distributed is initialised, of all ranks, so every rank uses the same threshold; every rank
            must call this function, as it is a collective).
        group_size: completions per prompt; required by ``group`` (must divide N).

    Returns:
        (N, T) bool mask, False on padding.
    """
    _check_fraction(fraction)
    scope_fn = SELECTION_SCOPES.get(scope)
    valid = _check_scores(scores, valid, "scores")
    return scope_fn(scores, valid, fraction, group_size)


def _combine(masks: list[torch.Tensor], combine: str) -> torch.Tensor:
    if combine not in COMBINE_MODES:
        raise ValueError(f"unknown combine mode {combine!r}; valid: {', '.join(COMBINE_MODES)}")
    out = masks[0].clone()
    for mask in masks[1:]:
        out = out | mask if combine == "union" else out & mask
    return out


def key_token_mask(
    scores: dict[str, torch.Tensor],
    valid: torch.Tensor,
    fractions: dict[str, float],
    scope: str = "group",
    group_size: int | None = None,
    combine: str = "union",
    signal_valid: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The key-token mask ``m`` of Video-KTR: per-signal top fractions, combined (METHOD 2).

    Args:
        scores: signal name -> (N, T) score (e.g. ``visual``, ``temporal``, ``entropy``). Signals without a
            fraction are ignored (they may be there for logging).
        valid: (N, T) completion mask.
        fractions: signal name -> fraction in [0, 1]; every name needs a score. A fraction of 0 still counts as a
            signal (it selects nothing).
        scope, group_size: see :func:`top_fraction_mask`.
        combine: ``union`` (paper) or ``intersection`` of the per-signal masks.
        signal_valid: optional signal name -> (N, T) bool, the tokens that signal may score (e.g. no temporal
            signal for an image or a single-patch video); the top fraction is then taken among
            ``valid & signal_valid[name]``.

    Returns:
        ``(mask, per_signal)``: (N, T) bool combined mask and signal name -> (N, T) bool mask, in the order of
        ``fractions``; all False on padding.
    """
    if not fractions:
        raise ValueError("fractions is empty: give at least one signal, e.g. {'entropy': 0.2}")
    missing = [name for name in fractions if name not in scores]
    if missing:
        raise ValueError(
            f"fractions name signal(s) {missing} that have no score; scores given for: {sorted(scores)}"
        )
    signal_valid = signal_valid or {}
    unknown = [name for name in signal_valid if name not in fractions]
    if unknown:
        raise ValueError(
            f"signal_valid names signal(s) {unknown} that are not in fractions {list(fractions)}"
        )
    valid = valid.bool()
    per_signal = {}
    for name, fraction in fractions.items():
        eligible = valid & signal_valid[name].bool() if name in signal_valid else valid
        per_signal[name] = top_fraction_mask(scores[name], eligible, fraction, scope, group_size)
    return _combine(list(per_signal.values()), combine), per_signal


def selection_metrics(
    mask: torch.Tensor,
    per_signal: dict[str, torch.Tensor],
    valid: torch.Tensor,
    scores: dict[str, torch.Tensor],
    combine: str = "union",
) -> dict[str, float]:
    """Statistics of a selection for logging (METHOD 2 "Log, every step"); local to this process.

    Args:
        mask: (N, T) combined mask; per_signal: name -> (N, T) mask; valid: (N, T); scores: name -> (N, T).
        combine: names the combined mask's metric (``ktr/selected_frac/union`` by default).

    Returns:
        ``ktr/selected_frac/<signal>`` and ``ktr/selected_frac/<combine>``: selected / valid tokens;
        ``ktr/overlap/<a>_<b>``: Jaccard |a & b| / |a | b| per pair of signals (0 when both are empty);
        ``ktr/score_mean/<signal>``: mean score over valid tokens; ``ktr/selected_per_completion/mean|min``:
        selected tokens per row. Ratios over zero valid tokens are reported as 0.
    """
    valid = valid.bool()
    n_valid = int(valid.sum())

    def ratio(num: torch.Tensor | int, den: torch.Tensor | int) -> float:
        return float(num) / float(den) if float(den) > 0 else 0.0

    metrics = {}
    for name, signal_mask in per_signal.items():
        metrics[f"ktr/selected_frac/{name}"] = ratio((signal_mask & valid).sum(), n_valid)
    metrics[f"ktr/selected_frac/{combine}"] = ratio((mask.bool() & valid).sum(), n_valid)
    for a, b in combinations(per_signal, 2):
        ma, mb = per_signal[a] & valid, per_signal[b] & valid
        metrics[f"ktr/overlap/{a}_{b}"] = ratio((ma & mb).sum(), (ma | mb).sum())
    for name, score in scores.items():
        metrics[f"ktr/score_mean/{name}"] = ratio(score.detach()[valid].double().sum(), n_valid)
    per_row = (mask.bool() & valid).sum(dim=1).double()
    metrics["ktr/selected_per_completion/mean"] = float(per_row.mean()) if per_row.numel() else 0.0
    metrics["ktr/selected_per_completion/min"] = float(per_row.min()) if per_row.numel() else 0.0
    return metrics


def soft_token_weights(
    scores: torch.Tensor, valid: torch.Tensor, scheme: str, temperature: float = 1.0
) -> torch.Tensor:
    """Soft alternative to the binary key-token mask (paper RQ4): a weight per token from its score.

    Each scheme maps a row's valid scores to positive raw weights (see the scheme functions), which are then
    normalised per completion so that **the mean weight over a row's valid tokens is 1** (the weights sum to the
    row's number of valid tokens), so the loss scale matches vanilla GRPO's.

    Args:
        scores: (N, T); valid: (N, T); scheme: a name in :data:`SOFT_WEIGHT_SCHEMES` (softmax, sigmoid, linear,
            exponential); temperature: > 0, divides the scores (or the normalised scores) before the mapping.

    Returns:
        (N, T) float weights, 0 on padding; a row whose scores are all equal gets weight 1 on every valid token;
        a row with no valid token gets all zeros.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    fn = SOFT_WEIGHT_SCHEMES.get(scheme)
    valid = _check_scores(scores, valid, "scores")
    scores = scores.detach().to(torch.promote_types(scores.dtype, torch.float32))
    raw = torch.where(valid, fn(scores, valid, temperature), torch.zeros_like(scores))
    n = valid.sum(dim=1, keepdim=True).to(raw.dtype)
    return raw * n / raw.sum(dim=1, keepdim=True).clamp(min=torch.finfo(raw.dtype).tiny)


def _row_min_max(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-row min-max normalisation over valid tokens to [0, 1]; a row of equal scores maps to 1."""
    big = torch.finfo(scores.dtype).max
    low = torch.where(valid, scores, torch.full_like(scores, big)).min(dim=1, keepdim=True).values
    high = torch.where(valid, scores, torch.full_like(scores, -big)).max(dim=1, keepdim=True).values
    span = high - low
    flat = span <= 0
    normalised = (scores - low) / torch.where(flat, torch.ones_like(span), span)
    return torch.where(flat, torch.ones_like(scores), normalised)


@SOFT_WEIGHT_SCHEMES.register("softmax")
def _softmax_weights(scores: torch.Tensor, valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(score / temperature) over the row's valid tokens (depends on the scores' scale)."""
    # finfo.min, not -inf, on padding: a row with no valid token then stays finite (it is zeroed by the caller).
    logits = torch.where(valid, scores / temperature, torch.full_like(scores, torch.finfo(scores.dtype).min))
    return torch.softmax(logits, dim=1)


@SOFT_WEIGHT_SCHEMES.register("sigmoid")
def _sigmoid_weights(scores: torch.Tensor, valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """sigmoid(z / temperature), z = the score standardised over the row's valid tokens (z = 0 if all equal)."""
    v = valid.to(scores.dtype)
    n = v.sum(dim=1, keepdim=True).clamp(min=1)
    mean = (scores * v).sum(dim=1, keepdim=True) / n
    std = (((scores - mean) * v).pow(2).sum(dim=1, keepdim=True) / n).sqrt()
    z = torch.where(
        std > 0, (scores - mean) / std.clamp(min=torch.finfo(scores.dtype).tiny), torch.zeros_like(scores)
    )
    return torch.sigmoid(z / temperature)


@SOFT_WEIGHT_SCHEMES.register("linear")
def _linear_weights(scores: torch.Tensor, valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """Min-max normalised score in [0, 1] (the row's lowest-scoring token gets weight 0; temperature unused)."""
    return _row_min_max(scores, valid)


@SOFT_WEIGHT_SCHEMES.register("exponential")
def _exponential_weights(scores: torch.Tensor, valid: torch.Tensor, temperature: float) -> torch.Tensor:
    """exp(u / temperature), u the min-max normalised score: the top token weighs e^(1/temperature) x the lowest."""
    return torch.exp(_row_min_max(scores, valid) / temperature)
