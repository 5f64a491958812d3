"""The querier: scores each candidate unit against the question; a combination's score is the mean of its units'.

Because r(c) = mean_{u in c} s(u), the best T/unit-unit combination is exactly the top-T/unit units by score, so
inference needs no search. Training ranks labelled combination pairs with ``-log sigmoid(r(c_w) - r(c_l))``
(METHOD.md section 8). Torch only.

Shapes: B records, n units, F = 2 * D unit descriptor (mean and max of the unit's LM-space vision tokens),
L question tokens, P pairs per record, k units per combination.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["QuerierConfig", "Querier", "combination_scores", "pairwise_ranking_loss", "top_units"]

WEIGHTS = "querier.safetensors"
CONFIG = "querier_config.json"


@dataclass
class QuerierConfig:
    """Sizes of the querier and what it was trained on (saved with the weights)."""

    feature_dim: int  # F
    query_dim: int  # D of the question embeddings
    n_units: int
    hidden_size: int = 64
    layers: int = 2
    heads: int = 4
    arch: str = "transformer"  # "transformer" | "gru" (see Querier)
    model_fingerprint: str = ""  # videoktr.frames.features.model_fingerprint of the features' model
    model_path: str = ""  # where that model was loaded from (for the error message)
    candidates: int = 16
    unit: int = 2


class Querier(nn.Module):
    """[question tokens; unit tokens] -> transformer encoder -> one score per unit. Each unit token also carries its
    elementwise product with the mean question token (a direct unit-question match).

    forward(units (B, n, F), query (B, L, D), query_mask (B, L) bool) -> scores (B, n)."""

    def __init__(self, config: QuerierConfig):
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.unit_in = nn.Sequential(nn.LayerNorm(config.feature_dim), nn.Linear(config.feature_dim, h))
        self.query_in = nn.Sequential(nn.LayerNorm(config.query_dim), nn.Linear(config.query_dim, h))
        self.position = nn.Embedding(config.n_units, h)
        self.kind = nn.Embedding(2, h)  # 0 question token, 1 unit
        self.match = nn.Linear(h, h)  # unit x question interaction (which unit shows what the question names)
        layer = nn.TransformerEncoderLayer(
            h, config.heads, dim_feedforward=2 * h, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        if config.arch == "gru":  # a recurrent pass over the units in time order: "right after X" is local
            self.gru = nn.GRU(h, h // 2, num_layers=1, batch_first=True, bidirectional=True)
        elif config.arch != "transformer":
            raise ValueError(f"unknown querier arch {config.arch!r}; valid: transformer, gru")
        self.head = nn.Sequential(nn.LayerNorm(h), nn.Linear(h, 1))

    def forward(self, units: torch.Tensor, query: torch.Tensor, query_mask: torch.Tensor) -> torch.Tensor:
        b, n, _ = units.shape
        if n != self.config.n_units:
            raise ValueError(f"the querier was built for {self.config.n_units} units, got {n}")
        pos = torch.arange(n, device=units.device)
        q = self.query_in(query)
        weights = query_mask.to(q.dtype).unsqueeze(-1)
        pooled = (q * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, h)
        u = self.unit_in(units)
        u = u + self.match(u * pooled.unsqueeze(1)) + self.position(pos) + self.kind.weight[1]
        q = q + self.kind.weight[0]
        tokens = torch.cat([q, u], dim=1)
        pad = torch.cat([~query_mask, torch.zeros(b, n, dtype=torch.bool, device=units.device)], dim=1)
        out = self.encoder(tokens, src_key_padding_mask=pad)[:, -n:]
        if self.config.arch == "gru":
            out = out + self.gru(out)[0]
        return self.head(out).squeeze(-1)

    def save_pretrained(self, path: str | Path, extra: dict | None = None) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path / WEIGHTS))
        (path / CONFIG).write_text(json.dumps({**asdict(self.config), **(extra or {})}, indent=2) + "\n")
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path) -> tuple[Querier, dict]:
        """(querier, the saved config dict including extra keys)."""
        from safetensors.torch import load_file

        from videoktr.errors import UserError

        path = Path(path)
        if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
            raise UserError(
                f"{path} is not a querier checkpoint (needs {CONFIG} and {WEIGHTS}); "
                "train one with `videoktr frames train`"
            )
        saved = json.loads((path / CONFIG).read_text())
        fields = QuerierConfig.__dataclass_fields__
        querier = cls(QuerierConfig(**{k: v for k, v in saved.items() if k in fields}))
        querier.load_state_dict(load_file(str(path / WEIGHTS)))
        querier.eval()
        return querier, saved


def combination_scores(unit_scores: torch.Tensor, combos: torch.Tensor) -> torch.Tensor:
    """r(c) = mean of the scores of c's units. unit_scores: (B, n); combos: (B, C, k) long -> (B, C)."""
    b, c, k = combos.shape
    gathered = unit_scores.gather(1, combos.reshape(b, c * k)).reshape(b, c, k)
    return gathered.mean(-1)


def pairwise_ranking_loss(
    winner: torch.Tensor, loser: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """mean of -log sigmoid(r_w - r_l) over valid pairs. winner, loser, mask: (B, P)."""
    loss = -nn.functional.logsigmoid(winner - loser)
    if mask is None:
        return loss.mean()
    mask = mask.to(loss.dtype)
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


def top_units(unit_scores: torch.Tensor, k: int) -> list[int]:
    """The ``k`` best units of one record, in time order. unit_scores: (n,). Ties: the earlier unit wins."""
    order = sorted(range(unit_scores.shape[0]), key=lambda u: (-float(unit_scores[u]), u))
    return sorted(order[:k])
