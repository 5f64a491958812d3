"""videoktr.core: the algorithm as pure tensor functions (imports torch only, never transformers / trl / av).

- attribution: per-token scores (log-prob shift, entropy, distribution shifts), memory-light log-softmax.
- selection: top-fraction key-token masks, their combination and metrics, soft token weights.
- advantages: group-relative advantages.  losses: clipped GRPO loss with a token mask, aggregations.
- tw_grpo: TW-GRPO token weights.  registry: name -> variant lookups.
"""

from videoktr.core.advantages import ADVANTAGE_SCALES, group_advantages
from videoktr.core.attribution import (
    DEFAULT_CHUNK_SIZE,
    DISTRIBUTION_METRICS,
    distribution_shift,
    entropy_from_logits,
    logprob_shift,
    selective_log_softmax,
)
from videoktr.core.losses import AGGREGATIONS, DENOMINATORS, agg_loss, k3_kl, policy_loss
from videoktr.core.registry import Registry, UnknownNameError
from videoktr.core.selection import (
    COMBINE_MODES,
    SELECTION_SCOPES,
    SOFT_WEIGHT_SCHEMES,
    key_token_mask,
    selection_metrics,
    soft_token_weights,
    top_fraction_mask,
)
from videoktr.core.tw_grpo import tw_token_weights, tw_token_weights_by_group

__all__ = [
    "ADVANTAGE_SCALES",
    "AGGREGATIONS",
    "COMBINE_MODES",
    "DEFAULT_CHUNK_SIZE",
    "DENOMINATORS",
    "DISTRIBUTION_METRICS",
    "SELECTION_SCOPES",
    "SOFT_WEIGHT_SCHEMES",
    "Registry",
    "UnknownNameError",
    "agg_loss",
    "distribution_shift",
    "entropy_from_logits",
    "group_advantages",
    "k3_kl",
    "key_token_mask",
    "logprob_shift",
    "policy_loss",
    "selection_metrics",
    "selective_log_softmax",
    "soft_token_weights",
    "top_fraction_mask",
    "tw_token_weights",
    "tw_token_weights_by_group",
]
