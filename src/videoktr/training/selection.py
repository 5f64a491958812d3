"""Key-token selection and TW-GRPO weights of ``KTRTrainer`` (METHOD 1-2, 5), computed on whole groups.

Where: at the end of the rollout (``_generate_and_score_completions``), on each process's whole *generation batch*
(``per_device_train_batch_size * steps_per_generation`` rows, B prompts x G completions, groups contiguous), BEFORE
TRL shuffles it and splits it into micro-batches. The result is one ``(N, T)`` tensor per row,
``ktr_token_mask`` (binary) or ``ktr_token_weights`` (soft / TW-GRPO), which TRL's shuffle and split carry with
the row; ``_compute_loss`` only reads it. So ``ktr_scope: group`` sees all G completions of a prompt and
TW-GRPO's divergence is taken over the whole group, whatever the accumulation, ``steps_per_generation``,
``num_iterations`` or number of processes. ``batch`` scope is the generation batch of every process (one
threshold, gathered with a collective).

Scores use the policy that sampled the batch (no gradient): the full-video log-probs / entropies and the perturbed
passes share one vision pass. With ``num_iterations > 1`` or ``steps_per_generation > gradient_accumulation_steps``
the selection is made once per sample, by that policy.

Rows of a group whose advantages are all exactly 0 get no policy gradient whatever their mask; their attribution
passes are skipped when that is exact: scope ``group`` or ``sequence`` (a ``batch`` threshold depends on every row),
the KL not gated by the mask (``ktr_mask_kl`` false or ``beta`` 0), and not ``aggregation: token-mean`` with
``ktr_denominator: selected`` (there the selected-token count of every row normalises the loss).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from videoktr import core
from videoktr.core.perturbations import TEMPORAL_PERTURBATIONS, VISUAL_PERTURBATIONS, apply_perturbation
from videoktr.errors import UserError

SELECTION_RECORD_VERSION = 1
SELECTION_FILE = "selection.jsonl"


def read_selection_records(path: str | Path) -> list[dict]:
    """The records of a ``selection.jsonl`` (format in docs/metrics.md)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def take_rows(video: dict, rows: torch.Tensor) -> dict:
    """The per-row video fields of ``rows`` (1-D long index)."""
    idx = rows.tolist()
    out = {}
    for key, value in video.items():
        out[key] = [value[i] for i in idx] if isinstance(value, list) else value[rows]
    return out


def image_rows(output: dict, rows: torch.Tensor) -> dict:
    """The image inputs (Qwen2.5-VL: pixel_values, image_grid_thw, num_images, mm_token_type_ids) of ``rows``."""
    if output.get("pixel_values") is None:
        return {}
    others = [
        k for k in ("pixel_attention_mask", "spatial_shapes", "image_sizes", "num_tiles") if k in output
    ]
    if others:
        raise UserError(
            f"image inputs with {others} are not supported by KTRTrainer's selection (Qwen2.5-VL only)"
        )
    num = list(output["num_images"])
    grid = output["image_grid_thw"]
    first = [0]
    for n in num:
        first.append(first[-1] + n)
    starts = [0, *grid.prod(-1).cumsum(0).tolist()]
    images = [j for r in rows.tolist() for j in range(first[r], first[r + 1])]
    pixels = [output["pixel_values"][starts[j] : starts[j + 1]] for j in images]
    return {
        "pixel_values": torch.cat(pixels) if pixels else output["pixel_values"][:0],
        "image_grid_thw": grid[images],
        "num_images": [num[r] for r in rows.tolist()],
        "mm_token_type_ids": output["mm_token_type_ids"][rows],
    }


class SelectionMixin:
    """Token masks / weights over whole groups, attached to the generation batch (mixed into ``KTRTrainer``)."""

    # ------------------------------------------------------------------------------------------ entry point
    def _attach_selection(self, output: dict, video: dict | None) -> None:
        """Add ``ktr_token_mask`` or ``ktr_token_weights`` (N, T) to the generation batch ``output``."""
        args = self.args
        if args.method not in ("ktr", "entropy", "tw_grpo"):
            return
        if args.method != "tw_grpo" and not args.selection_signals:
            return
        mode = "train" if self.model.training else "eval"
        group = self.num_generations if mode == "train" else self.num_generations_eval
        n_rows = output["completion_ids"].size(0)
        if n_rows % group:
            raise UserError(
                f"this process's generation batch has {n_rows} rows, not whole groups of num_generations={group}; "
                "make per_device_train_batch_size * steps_per_generation a multiple of num_generations"
            )
        valid = output["completion_mask"].bool()
        if "tool_mask" in output:
            valid = valid & output["tool_mask"].bool()
        active = self._rows_to_score(output["advantages"], group)
        forward = {
            "input_ids": torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1),
            "attention_mask": torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1),
            "logits_to_keep": output["completion_ids"].size(1),
        }
        if video is None and "temporal" in args.selection_signals:
            raise UserError(
                "the temporal signal needs video prompts; this batch has none (drop it from ktr_signals)"
            )
        if video is None and "visual" in args.selection_signals and output.get("pixel_values") is None:
            raise UserError("the visual signal needs video or image prompts; this batch has text only")
        self._metrics[mode]["ktr/skipped_frac"].append(self._gathered_mean(1.0 - active.float().mean()))
        with torch.no_grad():
            if args.method == "tw_grpo" and args.tw_weight_grad:
                return  # the loss forward computes the weights with gradient (whole groups per micro-batch)
            if args.method == "tw_grpo":
                output["ktr_token_weights"] = self._tw_weights(
                    output, forward, video, valid, active, group, mode
                )
                return
            self._key_tokens(output, forward, video, valid, active, group, mode)

    def _rows_to_score(self, advantages: torch.Tensor, group: int) -> torch.Tensor:
        """(N,) bool: rows whose attribution is computed (all, or those of groups with a non-zero advantage)."""
        args = self.args
        exact = (
            args.ktr_skip_zero_advantage
            and args.selection_scope != "batch"
            and not (args.ktr_mask_kl and self.beta != 0.0)
            and not (args.aggregation == "token-mean" and args.ktr_denominator == "selected")
        )
        moving = (advantages.view(-1, group) != 0).any(dim=1).repeat_interleave(group)
        return moving if exact else torch.ones_like(moving)

    def _gathered_mean(self, value: torch.Tensor) -> float:
        value = torch.as_tensor(value, dtype=torch.float32, device=self.accelerator.device).reshape(1)
        return self.accelerator.gather(value).mean().item()

    # ------------------------------------------------------------------------------------------- key tokens
    def _key_tokens(self, output, forward, video, valid, active, group, mode) -> None:
        args = self.args
        rows = active.nonzero(as_tuple=True)[0]
        if rows.numel() == 0:  # every group of this batch has zero advantages: nothing to score
            output["ktr_token_mask"] = torch.zeros_like(valid)
            if mode == "train":
                self._write_selection(output, valid, rows, None, {}, {}, group)
            return
        sub = {k: v[rows] if k != "logits_to_keep" else v for k, v in forward.items()}
        sub_video = take_rows(video, rows) if video is not None else None
        sub_valid = valid[rows]
        signals = args.selection_signals
        scores, signal_valid = self._signal_scores(output, sub, sub_video, sub_valid, rows, group)
        mask = torch.zeros_like(valid)
        if args.ktr_weighting != "binary":
            combined = torch.stack([_row_minmax(scores[s], sub_valid) for s in signals]).amax(dim=0)
            weights = torch.zeros(valid.shape, dtype=torch.float32, device=valid.device)
            if rows.numel():
                weights[rows] = core.soft_token_weights(combined, sub_valid, args.ktr_weighting).float()
            output["ktr_token_weights"] = weights
            return
        fractions = {s: args.selection_fractions[s] for s in signals}
        union, per_signal = core.key_token_mask(
            scores,
            sub_valid,
            fractions,
            scope=args.selection_scope,
            group_size=group,
            combine=args.ktr_combine,
            signal_valid=signal_valid,
        )
        mask[rows] = union & sub_valid
        output["ktr_token_mask"] = mask
        metrics = core.selection_metrics(mask[rows], per_signal, sub_valid, scores, combine=args.ktr_combine)
        for name, value in metrics.items():
            self._metrics[mode][name].append(self._gathered_mean(torch.tensor(value)))
        if mode == "train":
            self._write_selection(output, valid, rows, union, per_signal, scores, group)

    def _signal_scores(self, output, forward, video, valid, rows, group):
        """Scores (n, T) per signal for the ``n`` scored rows and the tokens each signal may select."""
        args = self.args
        signals = args.selection_signals
        features = None
        if video is not None:
            features = self._video_features(self.model, video["pixel_values_videos"], video["video_grid_thw"])
        image_kwargs = image_rows(output, rows) if video is None else {}
        if "_generation_logps" in output:  # the sampling pass's own log-probs / entropies: no extra full pass
            logp, entropy = output["_generation_logps"][rows], output["_generation_entropy"][rows]
        else:
            logp, entropy, _ = self._get_per_token_logps_and_entropies(
                self.model,
                forward["input_ids"],
                forward["attention_mask"],
                forward["logits_to_keep"],
                batch_size=self.args.ktr_score_batch_size,
                compute_entropy="entropy" in signals,
                video=video,
                video_features=features,
                **image_kwargs,
            )
        scores, signal_valid = {}, {}
        if "entropy" in signals:
            scores["entropy"] = entropy
        for kind in ("visual", "temporal"):
            if kind not in signals:
                continue
            if video is None:
                shifted, rows_ok = self._image_visual_score(forward, image_kwargs, logp)
            else:
                shifted, rows_ok = self._perturbed_score(forward, video, features, kind, logp, group)
            scores[kind] = shifted
            # A token the perturbation did not move at all (|shift| == 0, e.g. a video whose temporal patches are
            # identical) carries no signal: below r = 1 it is not a candidate, so a threshold that lands on 0 does
            # not "keep the ties" of every unmoved token. r = 1 keeps every valid token (METHOD 2).
            candidates = valid & rows_ok.unsqueeze(1)
            if not args.ktr_signed and args.selection_fractions[kind] < 1.0:
                candidates = candidates & (shifted != 0)
            signal_valid[kind] = candidates
        return scores, signal_valid

    def _image_visual_score(self, forward, image: dict, logp: torch.Tensor):
        """Visual signal of image prompts: the image features masked (``ktr_visual_perturbation``), one vision pass.
        Returns ((n, T) score, (n,) bool rows that hold an image)."""
        args = self.args
        if args.ktr_distance != "logprob":
            raise UserError(
                f"ktr_distance={args.ktr_distance!r} is implemented for video prompts; for image prompts use "
                "ktr_distance: logprob"
            )
        model = self.model
        with self.accelerator.autocast():
            feats = self.forwards.image_features(
                self._inner_model(model), image["pixel_values"], image["image_grid_thw"]
            )
        attention_mask, keep_positions = forward["attention_mask"], None
        if args.ktr_visual_perturbation == "drop":
            attention_mask = attention_mask.masked_fill(image["mm_token_type_ids"] == 1, 0)
            keep_positions, perturbed = forward["attention_mask"], feats
        else:
            grid = image["image_grid_thw"]
            perturbed = apply_perturbation(
                VISUAL_PERTURBATIONS,
                args.ktr_visual_perturbation,
                feats,
                grid,
                self._merge_size,
                self._ktr_generator,
            )
        logp_p = self.forwards.image_token_logps(
            model,
            forward["input_ids"],
            attention_mask,
            forward["logits_to_keep"],
            image,
            perturbed,
            autocast=self.accelerator.autocast,
            keep_positions=keep_positions,
        )
        rows_ok = torch.tensor([n > 0 for n in image["num_images"]], device=logp.device)
        return core.logprob_shift(logp, logp_p, signed=args.ktr_signed), rows_ok

    def _perturbed_features(self, features, video, kind: str, group: int):
        """Perturbed per-row features and (n,) bool rows that got a perturbation; one draw per prompt (its G rows
        share it) unless ``ktr_perturbation_draw: row``."""
        args = self.args
        registry = VISUAL_PERTURBATIONS if kind == "visual" else TEMPORAL_PERTURBATIONS
        name = args.ktr_visual_perturbation if kind == "visual" else args.ktr_temporal_perturbation
        options = {"n_segments": args.ktr_segments} if name == "segment_shuffle" else {}
        step = group if args.ktr_perturbation_draw == "prompt" else 1
        reps = tuple(features[::step])
        grid = video["video_grid_thw"][::step]
        out = apply_perturbation(registry, name, reps, grid, self._merge_size, self._ktr_generator, **options)
        perturbed = tuple(out[i // step] if out[i // step] is not None else f for i, f in enumerate(features))
        ok = torch.tensor([out[i // step] is not None for i in range(len(features))])
        return perturbed, ok

    def _perturbed_score(self, forward, video, features, kind, logp, group):
        """Score of every token for the visual or temporal counterfactual: ((n, T), rows_with_signal (n,) bool)."""
        args = self.args
        model = self.model
        rows_ok = torch.ones(logp.size(0), dtype=torch.bool, device=logp.device)
        attention_mask, keep_positions = forward["attention_mask"], None
        if kind == "visual" and args.ktr_visual_perturbation == "drop":
            video_positions = forward["input_ids"] == self._video_token_id()
            attention_mask = attention_mask.masked_fill(video_positions, 0)
            keep_positions = forward["attention_mask"]
            perturbed = features
        elif kind == "temporal" and args.ktr_temporal_level == "frame":
            perturbed = self._video_features(
                model, video["pixel_values_videos_shuffled"], video["video_grid_thw"]
            )
        else:
            perturbed, ok = self._perturbed_features(features, video, kind, group)
            rows_ok = ok.to(logp.device)
        # Rows whose counterfactual features are the real ones (e.g. shuffled identical patches) moved nothing:
        # their shift is exactly 0 also when logp comes from the generation pass (other numerics than a forward).
        unmoved = torch.tensor([torch.equal(p, f) for p, f in zip(perturbed, features, strict=True)])
        unmoved = unmoved.to(logp.device) & (attention_mask == forward["attention_mask"]).all(dim=1)
        if args.ktr_distance == "logprob":
            logp_p, _ = self.forwards.token_logps(
                model,
                forward["input_ids"],
                attention_mask,
                forward["logits_to_keep"],
                video,
                features=perturbed,
                batch_size=args.ktr_score_batch_size,
                autocast=self.accelerator.autocast,
                keep_positions=keep_positions,
            )
            logp_p = torch.where(unmoved.unsqueeze(1), logp, logp_p)
            return core.logprob_shift(logp, logp_p, signed=args.ktr_signed), rows_ok
        shifts = []
        for start in range(0, logp.size(0), group):
            part = slice(start, start + group)
            full = self._full_logits(
                model,
                forward["input_ids"][part],
                forward["attention_mask"][part],
                forward["logits_to_keep"],
                take_rows(video, torch.arange(start, min(start + group, logp.size(0)))),
                features[part],
            )
            other = self.forwards.full_logits(
                model,
                forward["input_ids"][part],
                attention_mask[part],
                forward["logits_to_keep"],
                take_rows(video, torch.arange(start, min(start + group, logp.size(0)))),
                perturbed[part],
                temperature=self.temperature,
                autocast=self.accelerator.autocast,
                keep_positions=None if keep_positions is None else keep_positions[part],
            )
            shifts.append(core.distribution_shift(full, other, args.ktr_distance))
        return torch.cat(shifts) if shifts else logp.new_zeros(logp.shape), rows_ok

    # ----------------------------------------------------------------------------------------------- TW-GRPO
    def _tw_weights(self, output, forward, video, valid, active, group, mode) -> torch.Tensor:
        """(N, T) TW-GRPO weights, each group's from that group's G completions (one forward per group)."""
        weights = (
            valid.float()
        )  # rows of skipped groups: their advantage is 0, any weight gives the same loss
        features = None
        if video is not None:
            features = self._video_features(self.model, video["pixel_values_videos"], video["video_grid_thw"])
        for start in range(0, valid.size(0), group):
            if not active[start]:
                continue
            part = slice(start, start + group)
            rows = torch.arange(start, start + group)
            logits = self._full_logits(
                self.model,
                forward["input_ids"][part],
                forward["attention_mask"][part],
                forward["logits_to_keep"],
                take_rows(video, rows) if video is not None else None,
                features[part] if features is not None else None,
                **(image_rows(output, rows) if video is None else {}),
            )
            weights[part] = core.tw_token_weights(
                logits, valid[part], group_size=group, alpha=self.args.tw_alpha
            ).float()
        kept = weights[valid & active.unsqueeze(1)]
        self._metrics[mode]["tw/weight_mean"].append(
            self._gathered_mean(kept.mean() if kept.numel() else torch.tensor(float("nan")))
        )
        return weights

    # ------------------------------------------------------------------------------------------------ records
    def _write_selection(self, output, valid, rows, union, per_signal, scores, group) -> None:
        """Append the rows' selections to ``output_dir/selection.jsonl`` (``log_selected_examples``: -1 = every
        row, n > 0 = the first n rows of each process's generation batch). Format: docs/metrics.md."""
        from accelerate.utils import gather_object

        limit = self.args.log_selected_examples
        if limit == 0:
            return
        n_rows = valid.size(0)
        keep = n_rows if limit < 0 else min(limit, n_rows)
        position = {int(r): k for k, r in enumerate(rows.tolist())}
        start = self.accelerator.process_index * n_rows
        problem_ids = getattr(self, "_rollout_problem_ids", None) or [None] * n_rows
        records = []
        for i in range(keep):
            length = int(valid[i].sum())
            record = {
                "version": SELECTION_RECORD_VERSION,
                "step": self.state.global_step,
                "group_id": (start + i) // group,
                "problem_id": problem_ids[i],
                "completion_ids": output["completion_ids"][i, :length].tolist(),
                "advantage": float(output["advantages"][i]),
                "skipped": i not in position,
                "scores": {},
                "masks": {},
                "union": None,
            }
            if i in position and union is not None:
                k = position[i]
                record["union"] = union[k, :length].tolist()
                record["masks"] = {s: m[k, :length].tolist() for s, m in per_signal.items()}
                record["scores"] = {s: v[k, :length].tolist() for s, v in scores.items()}
            records.append(record)
        gathered = gather_object(records) if self.accelerator.num_processes > 1 else records
        if self.accelerator.is_main_process:
            path = Path(self.args.output_dir) / SELECTION_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            # A run that starts at step 0 starts a new file; a resumed run appends to the one it continues.
            fresh = self.state.global_step == 0 and not getattr(self, "_selection_file_started", False)
            self._selection_file_started = True
            with open(path, "w" if fresh else "a") as f:
                for record in gathered:
                    f.write(json.dumps(record) + "\n")


def _row_minmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """One signal's (n, T) scores scaled to [0, 1] per row over its valid tokens, 0 on padding, before the signals
    are combined by their maximum (soft ``ktr_weighting``). A flat row (every valid score equal: a video whose
    temporal patches are identical, a single valid token) ranks nothing and maps to 0, so the other signals decide
    that row's weights; mapped to 1 it would win the maximum at every token and flatten the row's weights.
    ``core.selection._row_min_max`` maps a flat row to 1 on purpose for another step: it turns the combined score
    into raw weights that are then normalised to mean 1, where all zeros would leave nothing to normalise; a row flat
    in every signal reaches it as zeros and gets weight 1 on each valid token (tests/training/test_selection_mutants.py).
    """
    big = torch.finfo(scores.dtype).max
    lo = scores.masked_fill(~valid, big).amin(dim=1, keepdim=True)
    hi = scores.masked_fill(~valid, -big).amax(dim=1, keepdim=True)
    return ((scores - lo) / (hi - lo).clamp(min=1e-12)).masked_fill(~valid, 0.0)
