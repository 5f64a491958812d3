"""Token attribution scores (METHOD 1): log-prob shift, entropy, and distances between next-token distributions.

All functions take per-position quantities of a batch of completions: ``N`` rows (B prompts x G completions),
``T`` completion positions, ``V`` vocabulary entries. Functions that read full-vocabulary logits ``(N, T, V)``
work on chunks of ``chunk_size`` positions of the flattened ``(N*T, V)`` view, so that at most one chunk-sized
full-vocabulary temporary exists at a time (a 152k vocabulary makes a second full tensor prohibitive).
Low-precision logits (bf16/fp16) are upcast to float32 chunk by chunk; results are float32 (float64 for float64
logits).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from videoktr.core.registry import Registry

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DISTRIBUTION_METRICS",
    "distribution_shift",
    "entropy_from_logits",
    "logprob_shift",
    "selective_log_softmax",
]

DEFAULT_CHUNK_SIZE = 256
"""Flattened positions per chunk: 256 x 152k vocabulary x 4 bytes is about 156 MB of temporaries."""

DISTRIBUTION_METRICS: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry(
    "distribution metric"
)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_chunk_args(logits: torch.Tensor, temperature: float, chunk_size: int) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (N, T, V), got {tuple(logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


def _chunks(flat: torch.Tensor, chunk_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    for start in range(0, flat.shape[0], chunk_size):
        yield start, flat[start : start + chunk_size]


def _scaled(chunk: torch.Tensor, temperature: float) -> torch.Tensor:
    chunk = chunk.to(_compute_dtype(chunk.dtype))
    return chunk / temperature if temperature != 1.0 else chunk


def selective_log_softmax(
    logits: torch.Tensor, index: torch.Tensor, temperature: float = 1.0, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> torch.Tensor:
    """Log-probability of the chosen tokens, without materialising a full-vocabulary log-softmax.

    Args:
        logits: (N, T, V) next-token logits at each completion position.
        index: (N, T) int, the token whose log-prob is wanted (the sampled completion token).
        temperature: logits are divided by it (per chunk, so no scaled copy of the whole tensor).
        chunk_size: flattened positions per chunk.

    Returns:
        (N, T) ``log_softmax(logits / temperature)[n, t, index[n, t]]``, float32 (float64 for float64 logits).
        Differentiable: computed as ``logit[index] - logsumexp(logits)``, whose backward keeps no extra
        full-vocabulary tensor for float32/float64 logits with temperature 1.
    """
    _check_chunk_args(logits, temperature, chunk_size)
    if index.shape != logits.shape[:2]:
        raise ValueError(f"index must have shape {tuple(logits.shape[:2])}, got {tuple(index.shape)}")
    flat = logits.reshape(-1, logits.shape[-1])
    flat_index = index.reshape(-1, 1).long()
    pieces = []
    for start, chunk in _chunks(flat, chunk_size):
        chunk = _scaled(chunk, temperature)
        chosen = torch.gather(chunk, 1, flat_index[start : start + chunk.shape[0]]).squeeze(1)
        pieces.append(chosen - torch.logsumexp(chunk, dim=-1))
    return torch.cat(pieces).reshape(index.shape)


def logprob_shift(logp: torch.Tensor, logp_perturbed: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """Attribution score of each token under a perturbation of the input (METHOD 1, visual and temporal).

    Args:
        logp: (N, T) log-prob of the sampled token with the real video.
        logp_perturbed: (N, T) the same with the perturbed video (zeroed / shuffled features).
        signed: False (paper): ``abs(logp - logp_perturbed)``; True (authors' code): ``logp - logp_perturbed``,
            so that only tokens the real video makes *more* likely score high.

    Returns:
        (N, T) score; padding positions carry whatever the inputs hold (mask them with ``valid``).
    """
    if logp.shape != logp_perturbed.shape:
        raise ValueError(f"logp {tuple(logp.shape)} and logp_perturbed {tuple(logp_perturbed.shape)} differ")
    diff = logp - logp_perturbed
    return diff if signed else diff.abs()


def entropy_from_logits(
    logits: torch.Tensor, temperature: float = 1.0, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> torch.Tensor:
    """Entropy ``H = -sum_w p(w) log p(w)`` of the next-token distribution ``softmax(logits / temperature)``.

    Args:
        logits: (N, T, V).
        temperature: sampling temperature (TRL scales logits the same way).
        chunk_size: flattened positions per chunk; only one chunk of full-vocabulary temporaries exists at a time.

    Returns:
        (N, T) entropy in nats, float32 (float64 for float64 logits). ``-inf`` logits (banned tokens) contribute 0.
    """
    _check_chunk_args(logits, temperature, chunk_size)
    flat = logits.reshape(-1, logits.shape[-1])
    pieces = []
    for _, chunk in _chunks(flat, chunk_size):
        probs = torch.softmax(_scaled(chunk, temperature), dim=-1)
        pieces.append(-torch.special.xlogy(probs, probs).sum(dim=-1))
    return torch.cat(pieces).reshape(logits.shape[:2])


def distribution_shift(
    logits_a: torch.Tensor,
    logits_b: torch.Tensor,
    metric: str = "kl",
    temperature: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """Distance between two next-token distributions at every position (METHOD 1, paper RQ5).

    Args:
        logits_a: (N, T, V) logits with the real input (``p_a = softmax(logits_a / temperature)``).
        logits_b: (N, T, V) logits with the perturbed input.
        metric: a name in :data:`DISTRIBUTION_METRICS`: ``l1`` (sum |p_a - p_b|), ``l2`` (Euclidean norm of
            p_a - p_b), ``kl`` (KL(p_a || p_b)), ``jsd`` (Jensen-Shannon divergence, nats), ``cosine``
            (1 - cosine similarity of the probability vectors), ``hellinger`` (sqrt(0.5 sum (sqrt p_a - sqrt p_b)^2)).
        temperature: applied to both logits.
        chunk_size: flattened positions per chunk.

    Returns:
        (N, T) distance, 0 (up to float rounding) for identical distributions, float32 (float64 for float64 logits).
    """
    fn = DISTRIBUTION_METRICS.get(metric)
    _check_chunk_args(logits_a, temperature, chunk_size)
    if logits_a.shape != logits_b.shape:
        raise ValueError(f"logits_a {tuple(logits_a.shape)} and logits_b {tuple(logits_b.shape)} differ")
    flat_a = logits_a.reshape(-1, logits_a.shape[-1])
    flat_b = logits_b.reshape(-1, logits_b.shape[-1])
    pieces = []
    for start, chunk_a in _chunks(flat_a, chunk_size):
        chunk_b = flat_b[start : start + chunk_a.shape[0]]
        logp_a = torch.log_softmax(_scaled(chunk_a, temperature), dim=-1)
        logp_b = torch.log_softmax(_scaled(chunk_b, temperature), dim=-1)
        pieces.append(fn(logp_a, logp_b))
    return torch.cat(pieces).reshape(logits_a.shape[:2])


# Each metric: (rows, V) log-probs of a and b -> (rows,) distance.


@DISTRIBUTION_METRICS.register("l1")
def _l1(logp_a: torch.Tensor, logp_b: torch.Tensor) -> torch.Tensor:
    return (logp_a.exp() - logp_b.exp()).abs().sum(dim=-1)


@DISTRIBUTION_METRICS.register("l2")
def _l2(logp_a: torch.Tensor, logp_b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(logp_a.exp() - logp_b.exp(), dim=-1)


def _kl_terms(p: torch.Tensor, logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    # p * (log p - log q), with 0 where p == 0 (0 * log 0 = 0, even when log q = -inf as well).
    return torch.where(p > 0, p * (logp - logq), torch.zeros_like(p))


@DISTRIBUTION_METRICS.register("kl")
def _kl(logp_a: torch.Tensor, logp_b: torch.Tensor) -> torch.Tensor:
    return _kl_terms(logp_a.exp(), logp_a, logp_b).sum(dim=-1)


@DISTRIBUTION_METRICS.register("jsd")
def _jsd(logp_a: torch.Tensor, logp_b: torch.Tensor) -> torch.Tensor:
    p_a, p_b = logp_a.exp(), logp_b.exp()
    log_m = torch.log((p_a + p_b) / 2)
    jsd = 0.5 * (_kl_terms(p_a, logp_a, log_m).sum(dim=-1) + _kl_terms(p_b, logp_b, log_m).sum(dim=-1))
    return jsd.clamp(min=0.0)  # float rounding can give -1e-9 for (nearly) identical inputs


@DISTRIBUTION_METRICS.register("cosine")
def _cosine(logp_a: torch.Tensor, logp_b: torch.Tensor) -> torch.Tensor:
    similarity = torch.nn.functional.cosine_similarity(logp_a.exp(), logp_b.exp(), dim=-1)
    return (1.0 - similarity).clamp(min=0.0)  # rounding can give similarity 1 + 1e-7


@DISTRIBUTION_METRICS.register("hellinger")
def _hellinger(logp_a: torch.Tensor, logp_b: torch.Tensor) -> torch.Tensor:
    diff = (0.5 * logp_a).exp() - (0.5 * logp_b).exp()
    return torch.sqrt(0.5 * diff.pow(2).sum(dim=-1))
