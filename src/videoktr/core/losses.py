"""GRPO policy loss with a token mask (METHOD 3) and its aggregation choices.

Shapes: ``N`` rows (completions), ``T`` completion positions; ``valid``: (N, T) completion mask.

Per token: ``rho = exp(logp - old_logp)``, ``s = min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)``,
policy term ``-(m * s)`` with ``m`` = token mask (times soft token weights if given), KL term
``beta * (exp(x) - x - 1)``, ``x = ref_logp - logp`` (k3 estimator) on every valid token, or only where ``m``
is non-zero when ``mask_kl``.

Aggregations (:data:`AGGREGATIONS`, see :func:`agg_loss`) and denominators (:data:`DENOMINATORS`):
``valid`` divides by the completion length ``|o_i|`` (paper eq. 2), ``selected`` by the number of selected
(``token_mask``) tokens (authors' code). Denominators are clamped at 1, so a completion with no selected token
contributes 0 (never NaN). The KL term uses the ``selected`` denominator only when it is gated by the mask
(``mask_kl``); otherwise it is a mean over valid tokens, as the paper applies it to every valid token.

Rollouts sampled by another engine (vLLM): ``is_ratio`` = the truncated importance-sampling ratio
``pi_old / pi_sampler`` (TRL's ``vllm_importance_sampling_correction``) multiplies the policy term, not the KL term,
as in TRL's GRPO loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from videoktr.core.registry import Registry

__all__ = ["AGGREGATIONS", "DENOMINATORS", "agg_loss", "k3_kl", "policy_loss"]

AGGREGATIONS: Registry[Callable[[torch.Tensor, torch.Tensor, int | None], torch.Tensor]] = Registry(
    "loss aggregation"
)
DENOMINATORS = ("valid", "selected")


def agg_loss(
    per_token: torch.Tensor,
    weight_mask: torch.Tensor,
    denominator_mask: torch.Tensor,
    aggregation: str = "seq-mean-token-mean",
    max_completion_length: int | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss to a scalar.

    Args:
        per_token: (N, T) loss per token.
        weight_mask: (N, T) multiplies ``per_token`` before summing (the completion mask: zero on padding).
        denominator_mask: (N, T) tokens counted in the denominator (valid tokens, or selected tokens).
        aggregation: a name in :data:`AGGREGATIONS`:
            ``seq-mean-token-mean`` (GRPO, paper eq. 2): ``mean_i sum_t l*w / max(1, sum_t d)``;
            ``token-mean`` (DAPO): ``sum_{i,t} l*w / max(1, sum_{i,t} d)``;
            ``seq-mean-token-sum-norm`` (Dr. GRPO): ``sum_{i,t} l*w / (N * max_completion_length)``
            (``denominator_mask`` unused).
        max_completion_length: required by ``seq-mean-token-sum-norm``.

    Returns:
        scalar loss.
    """
    fn = AGGREGATIONS.get(aggregation)
    if (
        per_token.dim() != 2
        or weight_mask.shape != per_token.shape
        or denominator_mask.shape != per_token.shape
    ):
        raise ValueError(
            f"per_token, weight_mask and denominator_mask must all be (N, T); got {tuple(per_token.shape)}, "
            f"{tuple(weight_mask.shape)}, {tuple(denominator_mask.shape)}"
        )
    weighted = per_token * weight_mask.to(per_token.dtype)
    return fn(weighted, denominator_mask.to(per_token.dtype), max_completion_length)


@AGGREGATIONS.register("seq-mean-token-mean")
def _seq_mean_token_mean(weighted: torch.Tensor, denom: torch.Tensor, max_len: int | None) -> torch.Tensor:
    return (weighted.sum(dim=-1) / denom.sum(dim=-1).clamp(min=1.0)).mean()


@AGGREGATIONS.register("token-mean")
def _token_mean(weighted: torch.Tensor, denom: torch.Tensor, max_len: int | None) -> torch.Tensor:
    return weighted.sum() / denom.sum().clamp(min=1.0)


@AGGREGATIONS.register("seq-mean-token-sum-norm")
def _seq_mean_token_sum_norm(
    weighted: torch.Tensor, denom: torch.Tensor, max_len: int | None
) -> torch.Tensor:
    if max_len is None or max_len < 1:
        raise ValueError(
            "aggregation 'seq-mean-token-sum-norm' needs max_completion_length >= 1 (the generation limit), "
            f"got {max_len}"
        )
    return weighted.sum() / (weighted.shape[0] * max_len)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """(N, T) k3 estimate of KL(policy || reference) per token: ``exp(x) - x - 1``, ``x = ref_logp - logp``."""
    x = ref_logp - logp
    return torch.exp(x) - x - 1


def _check_loss_args(logp, old_logp, advantages, valid, denominator, aggregation) -> None:
    if logp.dim() != 2:
        raise ValueError(f"logp must have shape (N, T), got {tuple(logp.shape)}")
    if valid.shape != logp.shape or (old_logp is not None and old_logp.shape != logp.shape):
        raise ValueError("logp, old_logp and valid must have the same (N, T) shape")
    if advantages.shape not in (logp.shape[:1], logp.shape):
        raise ValueError(
            f"advantages must be (N,) or (N, T) for logp {tuple(logp.shape)}, got {tuple(advantages.shape)}"
        )
    if denominator not in DENOMINATORS:
        raise ValueError(f"unknown denominator {denominator!r}; valid: {', '.join(DENOMINATORS)}")
    AGGREGATIONS.get(aggregation)


def _clip_metrics(ratio, advantages, valid, eps_low, eps_high) -> dict[str, float]:
    """TRL-style fractions of valid tokens whose ratio is clipped on the side that matters for their sign."""
    low = (ratio < 1 - eps_low) & (advantages < 0)
    high = (ratio > 1 + eps_high) & (advantages > 0)
    n_valid = valid.sum().clamp(min=1)
    return {
        "clip/ratio_low": float((low & valid).sum() / n_valid),
        "clip/ratio_high": float((high & valid).sum() / n_valid),
        "clip/region": float(((low | high) & valid).sum() / n_valid),
    }


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    valid: torch.Tensor,
    token_mask: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.04,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    aggregation: str = "seq-mean-token-mean",
    denominator: str = "valid",
    mask_kl: bool = False,
    token_weights: torch.Tensor | None = None,
    max_completion_length: int | None = None,
    is_ratio: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped GRPO surrogate restricted to key tokens, plus the k3 KL penalty (module docstring has the formula).

    Args:
        logp: (N, T) log-probs of the sampled tokens under the current policy (carries the gradient).
        old_logp: (N, T) under the sampling policy; None means on-policy (``logp.detach()``, as TRL does).
        advantages: (N,) (or (N, T)) advantages.
        valid: (N, T) completion mask.
        token_mask: (N, T) bool/float key-token mask ``m``; None means every token (vanilla GRPO).
        ref_logp: (N, T) reference-model log-probs; the KL term is added only if given and ``beta != 0``.
        beta, eps_low, eps_high: KL coefficient and clipping range.
        aggregation: see :func:`agg_loss`.
        denominator: ``valid`` (paper) or ``selected`` (authors' code).
        mask_kl: gate the KL term by ``m`` too (authors' code).
        token_weights: (N, T) soft weights multiplying ``m`` (soft weighting, TW-GRPO).
        max_completion_length: for ``seq-mean-token-sum-norm``.
        is_ratio: (N, T) or (N, 1) importance-sampling ratio of the sampling engine (TRL's
            ``importance_sampling_ratio``), multiplying the policy term; None = 1.

    Returns:
        ``(loss, metrics)``: scalar loss and detached floats ``loss/policy``, ``loss/kl`` (mean k3 over valid
        tokens; 0 without a KL term), ``clip/ratio_low``, ``clip/ratio_high``, ``clip/region``,
        ``ktr/loss_token_frac`` (valid tokens with non-zero ``m``).
    """
    _check_loss_args(logp, old_logp, advantages, valid, denominator, aggregation)
    valid = valid.bool()
    old_logp = logp.detach() if old_logp is None else old_logp
    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
    m = torch.ones_like(logp) if token_mask is None else token_mask.to(logp.dtype)
    if token_weights is not None:
        m = m * token_weights.to(logp.dtype)

    ratio = torch.exp(logp - old_logp)
    surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv)
    policy_term = -(m * surrogate)
    if is_ratio is not None:
        policy_term = policy_term * is_ratio.to(policy_term.dtype)
    selected = valid & token_mask.bool() if token_mask is not None else valid
    denom = valid if denominator == "valid" else selected
    args = (aggregation, max_completion_length)

    kl = k3_kl(logp, ref_logp) if ref_logp is not None and beta != 0 else None
    if kl is None:
        loss = agg_loss(policy_term, valid, denom, *args)
    elif mask_kl or denominator == "valid":
        loss = agg_loss(policy_term + beta * (m * kl if mask_kl else kl), valid, denom, *args)
    else:  # selected tokens for the policy term, but the KL is a mean over every valid token
        loss = agg_loss(policy_term, valid, denom, *args) + beta * agg_loss(kl, valid, valid, *args)

    with torch.no_grad():
        n_valid = valid.sum().clamp(min=1)
        metrics = {
            "loss/policy": float(agg_loss(policy_term.detach(), valid, denom, *args)),
            "loss/kl": float((kl.detach() * valid).sum() / n_valid) if kl is not None else 0.0,
            "ktr/loss_token_frac": float((valid & (m != 0)).sum() / n_valid),
        }
        metrics.update(_clip_metrics(ratio.detach(), adv, valid, eps_low, eps_high))
    return loss, metrics
