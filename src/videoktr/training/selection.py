"""Key-token selection and TW-GRPO weights of ``KTRTrainer`` (METHOD 1-2, 5): the attribution passes on the
policy's own vision features, the top-fraction masks per signal and scope, and the selection records.
"""

from __future__ import annotations

import torch

from videoktr import core
from videoktr.core.perturbations import TEMPORAL_PERTURBATIONS, VISUAL_PERTURBATIONS, apply_perturbation


class SelectionMixin:
    """Token masks / weights for the loss (mixed into ``KTRTrainer``)."""

    def _token_selection(self, model, forward, inputs, video, features, image_kwargs, logp, entropy, valid):
        """Returns (token_mask (N, T) bool | None, token_weights (N, T) | None, metrics dict)."""
        args = self.args
        metrics: dict[str, float] = {}
        if args.method == "tw_grpo":
            logits = self._full_logits(model, **forward, video=video, features=features, **image_kwargs)
            weights = self._per_group(
                inputs["group_ids"],
                lambda rows: core.tw_token_weights(
                    logits[rows], valid[rows], group_size=len(rows), alpha=args.tw_alpha
                ),
                valid,
                dtype=logits.dtype,
            )
            metrics["tw/weight_mean"] = (weights[valid].mean().item()) if valid.any() else float("nan")
            return None, weights, metrics
        signals = args.selection_signals
        if not signals:
            return None, None, metrics
        scores = {"entropy": entropy} if "entropy" in signals else {}
        signal_valid = {}
        for kind in ("visual", "temporal"):
            if kind not in signals:
                continue
            if video is None:
                if kind == "temporal":
                    raise ValueError(
                        "the temporal signal needs video inputs; drop 'temporal' from ktr_signals"
                    )
                raise ValueError("the visual signal is computed for video prompts; this batch has none")
            shifted, rows_ok = self._perturbed_score(model, forward, video, features, kind, logp)
            scores[kind] = shifted
            # A token the perturbation did not move at all (|shift| == 0, e.g. a video whose temporal patches are
            # identical) carries no signal: for a top fraction below 1 it is not a candidate, so a threshold that
            # lands on 0 does not "keep the ties" of every unmoved token. r = 1 keeps every valid token (METHOD 2).
            candidates = valid & rows_ok.unsqueeze(1)
            if not args.ktr_signed and args.selection_fractions[kind] < 1.0:
                candidates = candidates & (shifted != 0)
            signal_valid[kind] = candidates
        if args.ktr_weighting != "binary":
            combined = torch.stack([self._row_minmax(scores[s], valid) for s in signals]).amax(dim=0)
            weights = core.soft_token_weights(combined, valid, args.ktr_weighting)
            return None, weights, metrics
        fractions = {s: args.selection_fractions[s] for s in signals}
        mask, per_signal = self._select(scores, valid, signal_valid, fractions, inputs["group_ids"])
        metrics.update(core.selection_metrics(mask, per_signal, valid, scores))
        self._record_selection(inputs, mask, per_signal, scores, valid)
        return mask, None, metrics

    def _select(self, scores, valid, signal_valid, fractions, group_ids):
        per_signal = {}
        for name, fraction in fractions.items():
            v = signal_valid.get(name, valid)
            if self.args.selection_scope == "group":
                per_signal[name] = self._per_group(
                    group_ids,
                    lambda rows, s=scores[name], v=v, f=fraction: core.top_fraction_mask(
                        s[rows], v[rows], f, scope="group", group_size=len(rows)
                    ),
                    valid,
                    dtype=torch.bool,
                )
            else:
                per_signal[name] = core.top_fraction_mask(
                    scores[name], v, fraction, scope=self.args.selection_scope
                )
        stacked = torch.stack(list(per_signal.values()))
        mask = stacked.any(dim=0) if self.args.ktr_combine == "union" else stacked.all(dim=0)
        return mask & valid, per_signal

    @staticmethod
    def _per_group(group_ids: torch.Tensor, fn, like: torch.Tensor, dtype) -> torch.Tensor:
        """Apply ``fn(rows) -> (len(rows), T)`` to the rows of each group present in the micro-batch."""
        out = torch.zeros(like.shape, dtype=dtype, device=like.device)
        for gid in torch.unique(group_ids).tolist():
            rows = (group_ids == gid).nonzero(as_tuple=True)[0]
            out[rows] = fn(rows).to(dtype)
        return out

    @staticmethod
    def _row_minmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        big = torch.finfo(scores.dtype).max
        lo = scores.masked_fill(~valid, big).amin(dim=1, keepdim=True)
        hi = scores.masked_fill(~valid, -big).amax(dim=1, keepdim=True)
        return ((scores - lo) / (hi - lo).clamp(min=1e-12)).masked_fill(~valid, 0.0)

    def _perturbed_score(self, model, forward, video, features, kind, logp):
        """Score of every token for the visual or temporal counterfactual: ((N, T), rows_with_signal (N,) bool)."""
        args = self.args
        rows_ok = torch.ones(logp.size(0), dtype=torch.bool, device=logp.device)
        feats = tuple(f.detach() for f in features)
        attention_mask = forward["attention_mask"]
        if kind == "visual" and args.ktr_visual_perturbation == "drop":
            attention_mask = attention_mask.masked_fill(forward["input_ids"] == self._video_token_id(), 0)
            perturbed = feats
        elif kind == "temporal" and args.ktr_temporal_level == "frame":
            with torch.no_grad():
                perturbed = self._video_features(
                    model, video["pixel_values_videos_shuffled"], video["video_grid_thw"]
                )
        else:
            registry = VISUAL_PERTURBATIONS if kind == "visual" else TEMPORAL_PERTURBATIONS
            name = args.ktr_visual_perturbation if kind == "visual" else args.ktr_temporal_perturbation
            options = {"n_segments": args.ktr_segments} if name == "segment_shuffle" else {}
            out = apply_perturbation(
                registry,
                name,
                feats,
                video["video_grid_thw"],
                self._merge_size,
                self._ktr_generator,
                **options,
            )
            rows_ok = torch.tensor([o is not None for o in out], device=logp.device)
            perturbed = tuple(o if o is not None else f for o, f in zip(out, feats, strict=True))
        fwd = {**forward, "attention_mask": attention_mask}
        if args.ktr_distance == "logprob":
            with torch.no_grad():
                logp_p, _, _ = self._get_per_token_logps_and_entropies(
                    model,
                    fwd["input_ids"],
                    fwd["attention_mask"],
                    fwd["logits_to_keep"],
                    video=video,
                    video_features=perturbed,
                )
            return core.logprob_shift(logp, logp_p, signed=args.ktr_signed), rows_ok
        logits_full = self._full_logits(model, **forward, video=video, features=feats)
        logits_p = self._full_logits(model, **fwd, video=video, features=perturbed)
        return core.distribution_shift(logits_full, logits_p, args.ktr_distance), rows_ok

    def _record_selection(self, inputs, mask, per_signal, scores, valid) -> None:
        """Keep up to ``log_selected_examples`` rows per step with their selections (for analysis / reports)."""
        n = self.args.log_selected_examples
        if n <= 0:
            return
        for i in range(min(n, mask.size(0))):
            length = int(valid[i].sum())
            self.selection_records.append(
                {
                    "step": self.state.global_step,
                    "group_id": int(inputs["group_ids"][i]),
                    "completion_ids": inputs["completion_ids"][i, :length].tolist(),
                    "union": mask[i, :length].tolist(),
                    "masks": {k: m[i, :length].tolist() for k, m in per_signal.items()},
                    "scores": {k: [round(x, 5) for x in s[i, :length].tolist()] for k, s in scores.items()},
                    "advantage": float(inputs["advantages"][i]),
                }
            )
