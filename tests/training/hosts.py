"""Stand-ins for the fast tests of ``KTRTrainer``'s mixins (``test_*_mutants.py``): a host object carrying what a
mixin method reads (a real ``KTRConfig``, the mode, the metrics, a one-process accelerator) and a fake model whose
log-probs, entropies and logits are simple functions of its inputs, so a test can derive every expected value by
hand or with the core functions, in milliseconds instead of a tiny-model rollout.

The fake model. For a batch of ``N`` rows whose last ``T`` input positions are the completion:
    logp[i, t]    = -0.01 * id[i, t] * (1 + 0.1 * code_i + 0.05 * seen_i + 0.001 * kept_i + seconds_i)
    entropy[i, t] = 0.5 + 0.1 * id[i, t]
    logits[i, t, v] = 0.1 * (v + 1) * id[i, t] * (1 + 0.1 * code_i + 0.05 * seen_i + seconds_i) / temperature
with ``id`` the completion token ids, ``code_i`` an order-sensitive sum of row i's vision features (0 without
features), ``seen_i`` the row's attended positions, ``kept_i`` its ``keep_positions`` (0 when not given) and
``seconds_i`` its video's ``second_per_grid_ts`` (0 without video). A perturbation of the features, of the attention
mask, of the positions or of the rows' videos therefore moves every value by an amount a test can compute.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from types import SimpleNamespace

import torch

from videoktr.training.config import KTRConfig

VIDEO_TOKEN = 3  # the fake model's video placeholder id


def code(features) -> torch.Tensor:
    """(N,) order-sensitive summary of per-row features: sum_k x_k * (k + 1) / numel over the flattened row."""
    out = []
    for f in features:
        flat = f.double().flatten()
        out.append((flat * torch.arange(1, flat.numel() + 1, dtype=torch.float64)).sum() / flat.numel())
    return torch.stack(out).float()


def _row_terms(input_ids, attention_mask, features, video, keep_positions):
    n = input_ids.size(0)
    c = code(features) if features is not None else torch.zeros(n)
    seen = attention_mask.float().sum(1)
    kept = keep_positions.float().sum(1) if keep_positions is not None else torch.zeros(n)
    seconds = video["second_per_grid_ts"].float() if video is not None else torch.zeros(n)
    return c, seen, kept, seconds


def fake_logps(input_ids, attention_mask, width, features=None, video=None, keep_positions=None):
    c, seen, kept, seconds = _row_terms(input_ids, attention_mask, features, video, keep_positions)
    ids = input_ids[:, -width:].float()
    scale = 1 + 0.1 * c + 0.05 * seen + 0.001 * kept + seconds
    return -0.01 * ids * scale[:, None]


def fake_entropy(input_ids, width):
    return 0.5 + 0.1 * input_ids[:, -width:].float()


def fake_logits(input_ids, attention_mask, width, features=None, video=None, temperature=1.0, vocab=10):
    c, seen, _, seconds = _row_terms(input_ids, attention_mask, features, video, None)
    ids = input_ids[:, -width:].float()
    scale = (1 + 0.1 * c + 0.05 * seen + seconds)[:, None, None]
    v = torch.arange(1, vocab + 1, dtype=torch.float32)
    return 0.1 * v * ids[..., None] * scale / temperature


class FakeForwards:
    """``QwenVLForwards`` stand-in: the fake model's passes; every call is recorded in ``calls``. With ``policy``
    set, every pass checks that it runs that model (``inner`` for the vision tower) under ``autocast``."""

    merge_size = 1

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.policy, self.autocast = None, None

    def _check(self, model, kw):
        if self.policy is not None:
            assert model is self.policy, "a pass ran another model than the policy"
            assert kw.get("autocast") == self.autocast, "a pass ran without the accelerator's autocast"

    def token_logps(self, model, input_ids, attention_mask, logits_to_keep, video, features=None, **kw):
        self._check(model, kw)
        self.calls.append(("token_logps", dict(input_ids=input_ids, attention_mask=attention_mask,
                                               logits_to_keep=logits_to_keep, video=video, features=features, **kw)))  # fmt: skip
        logp = fake_logps(
            input_ids, attention_mask, logits_to_keep, features, video, kw.get("keep_positions")
        )
        return logp, fake_entropy(input_ids, logits_to_keep) if kw.get("compute_entropy") else None

    def full_logits(self, model, input_ids, attention_mask, logits_to_keep, video, features, **kw):
        self._check(model, kw)
        self.calls.append(("full_logits", dict(input_ids=input_ids, attention_mask=attention_mask,
                                               logits_to_keep=logits_to_keep, video=video, features=features, **kw)))  # fmt: skip
        if video is not None:
            assert len(video["pixel_values_videos"]) == input_ids.size(0), "video rows != input rows"
        return fake_logits(
            input_ids, attention_mask, logits_to_keep, features, video, kw.get("temperature", 1.0)
        )

    def image_features(self, inner, pixel_values, grid):
        if self.policy is not None:
            assert inner == ("inner", self.policy), "image features of another model than the policy"
        self.calls.append(("image_features", dict(inner=inner, pixel_values=pixel_values, grid=grid)))
        return tuple(torch.split(pixel_values.float() * 1.0, grid.prod(-1).tolist()))

    def image_token_logps(self, model, input_ids, attention_mask, logits_to_keep, image, perturbed, **kw):
        self._check(model, kw)
        self.calls.append(("image_token_logps", dict(attention_mask=attention_mask, image=image,
                                                     perturbed=perturbed, **kw)))  # fmt: skip
        every = torch.cat(list(perturbed)).flatten()  # every row sees the batch's images (fake)
        return fake_logps(input_ids, attention_mask, logits_to_keep, [every] * input_ids.size(0), None,
                          kw.get("keep_positions"))  # fmt: skip

    def named(self, name: str) -> list[dict]:
        return [kw for n, kw in self.calls if n == name]


class FakeAccelerator:
    """One process: ``gather`` / ``reduce`` return their input."""

    device = torch.device("cpu")
    num_processes = 1
    process_index = 0
    is_main_process = True

    def gather(self, value):
        return value

    def reduce(self, value, reduction="sum"):
        return value

    def autocast(self):
        return contextlib.nullcontext()

    def unwrap_model(self, model):
        return model


def make_config(tmp_path, **fields) -> KTRConfig:
    base = dict(output_dir=str(tmp_path), use_cpu=True, report_to="none", temperature=0.7, seed=0)
    return KTRConfig(**{**base, **fields})


class HostBase:
    """The attributes ``KTRTrainer``'s mixins read, without a model: group ``G`` in training, ``G_eval`` in eval."""

    def __init__(self, args: KTRConfig, group: int = 2, group_eval: int = 3):
        self.args = args
        self.model = SimpleNamespace(training=True)
        self.num_generations, self.num_generations_eval = group, group_eval
        self.beta = args.beta
        self.temperature = args.temperature
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.accelerator = FakeAccelerator()
        self.forwards = FakeForwards()
        self.forwards.policy, self.forwards.autocast = self.model, self.accelerator.autocast
        self._ktr_generator = torch.Generator().manual_seed(0)
        self._merge_size = 1
        self.state = SimpleNamespace(global_step=0)
        self.feature_calls: list[tuple] = []
        self.logp_calls: list[dict] = []

    # the trainer's passes, on the fake model
    def _video_features(self, model, pixel_rows, grid):
        assert model is self.model and isinstance(grid, torch.Tensor) and grid.size(0) == len(pixel_rows)
        self.feature_calls.append((pixel_rows, grid))
        return tuple(p.float() * 1.0 for p in pixel_rows)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, **kw):
        assert model is self.model
        self.logp_calls.append(dict(input_ids=input_ids, attention_mask=attention_mask,
                                    logits_to_keep=logits_to_keep, **kw))  # fmt: skip
        logp = fake_logps(
            input_ids, attention_mask, logits_to_keep, kw.get("video_features"), kw.get("video")
        )
        entropy = fake_entropy(input_ids, logits_to_keep) if kw.get("compute_entropy") else None
        return logp, entropy, None

    def _full_logits(self, model, input_ids, attention_mask, logits_to_keep, video, features, **image_kwargs):
        return self.forwards.full_logits(
            model, input_ids, attention_mask, logits_to_keep, video, features,
            image_kwargs=image_kwargs, temperature=self.temperature, autocast=self.accelerator.autocast,
        )  # fmt: skip

    def _video_token_id(self):
        return VIDEO_TOKEN

    def _inner_model(self, model=None):
        return ("inner", model)
