"""Gradient decomposition of the paper's Appendix B.1 on recorded batches: selected tokens vs the rest.

For one generation batch of N completions with advantages ``A_i``, valid tokens ``V`` and key-token mask ``S``
(the ``union`` of ``selection.jsonl``), the on-policy policy-gradient loss splits over disjoint token sets, with the
run's aggregation ``agg`` (``videoktr.core.agg_loss``, whose denominator counts every valid token):

    L_S = agg(-A_i log pi(y_it), weights [t in S & V],  denominator V)
    L_R = agg(-A_i log pi(y_it), weights [t in V \\ S], denominator V)
    g_S = dL_S/dtheta,  g_R = dL_R/dtheta,  g = g_S + g_R   (the full, unmasked GRPO gradient)

and the report gives ``|g_S|``, ``|g_R|``, ``|g|`` and the cosines of ``g_S`` and ``g_R`` with ``g`` on the
parameters of the last decoder layers. What is approximated, against the gradient the trainer took at that step:
- the policy is the analysed checkpoint, not the policy that sampled the batch (the weights of that step are not
  kept); at the checkpoint the ratio is taken as 1 (old log-probs = current ones), where PPO clipping is inactive,
  so the clipped surrogate's gradient equals the plain ``-A grad log pi`` above;
- the denominator counts every valid token (the full GRPO loss's); a run with ``ktr_denominator: selected``
  normalised its masked loss by the selected tokens instead; ``token-mean-global`` is taken over the batch;
- no KL term (it is zero in the demo, ``beta: 0``), and only the recorded rows (all rows with
  ``log_selected_examples: -1``; the rows of skipped groups have zero advantage and no gradient anyway).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from videoktr.core.losses import agg_loss
from videoktr.errors import UserError

__all__ = [
    "CannotReplay",
    "gradient_decomposition",
    "last_layer_params",
    "recorded_batch_gradients",
    "summarise",
]


class CannotReplay(UserError):
    """The recorded batches cannot be rebuilt (no recipe, prompts not in the training data)."""


def _flat(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1).double() for g, p in zip(grads, params)]
    )


def _cos(a: torch.Tensor, b: torch.Tensor) -> float | None:
    den = a.norm() * b.norm()
    return None if den == 0 else float(a @ b / den)


def gradient_decomposition(
    logp: torch.Tensor,
    advantages: torch.Tensor,
    valid: torch.Tensor,
    selected: torch.Tensor,
    params: Sequence[torch.Tensor],
    aggregation: str = "token-mean",
    max_completion_length: int | None = None,
) -> dict[str, float | None]:
    """B.1 numbers of one batch (see the module docstring).

    logp: (N, T) log-probs of the completion tokens, differentiable w.r.t. ``params``; advantages: (N,);
    valid: (N, T) bool; selected: (N, T) bool key-token mask (only its valid part counts); aggregation: a name in
    ``videoktr.core.AGGREGATIONS`` (``max_completion_length`` for ``seq-mean-token-sum-norm``).
    Returns norm_selected, norm_rest, norm_full, cos_selected_full, cos_rest_full, cos_selected_rest (None when a
    norm is 0), selected_frac (selected valid tokens / valid tokens).
    """
    valid = valid.bool()
    sel = selected.bool() & valid
    rest = valid & ~sel
    per_token = -advantages.to(logp.dtype).unsqueeze(1) * logp
    loss_sel = agg_loss(per_token, sel, valid, aggregation, max_completion_length)
    loss_rest = agg_loss(per_token, rest, valid, aggregation, max_completion_length)
    g_sel = _flat(torch.autograd.grad(loss_sel, params, retain_graph=True, allow_unused=True), params)
    g_rest = _flat(torch.autograd.grad(loss_rest, params, allow_unused=True), params)
    g_full = g_sel + g_rest
    return {
        "norm_selected": float(g_sel.norm()),
        "norm_rest": float(g_rest.norm()),
        "norm_full": float(g_full.norm()),
        "cos_selected_full": _cos(g_sel, g_full),
        "cos_rest_full": _cos(g_rest, g_full),
        "cos_selected_rest": _cos(g_sel, g_rest),
        "selected_frac": float(sel.sum() / valid.sum().clamp(min=1)),
    }


def last_layer_params(model: torch.nn.Module, layers: int) -> tuple[list[str], list[torch.Tensor]]:
    """(names, parameters) of the last ``layers`` decoder layers of the language model."""
    from videoktr.models.qwen2_5_vl import find_vl_model

    stack = find_vl_model(model).language_model.layers
    if not 1 <= layers <= len(stack):
        raise UserError(
            f"--grad-layers {layers}: the model has {len(stack)} decoder layers; pick 1..{len(stack)}"
        )
    first = len(stack) - layers
    names, params = [], []
    for k in range(first, len(stack)):
        for name, p in stack[k].named_parameters():
            names.append(f"layers.{k}.{name}")
            params.append(p)
    return names, params


def _prompts(recipe, config, problem_ids: list) -> list[list[dict]]:
    """The conversational prompts the trainer built for ``problem_ids`` (same template, same video part)."""
    from videoktr.training.data import prepare_rl_rows
    from videoktr.training.recipe import check_training_data

    records, root = check_training_data(recipe)
    by_id = {r.get("problem_id"): r for r in records}
    missing = sorted({str(p) for p in problem_ids if p not in by_id})
    if missing:
        raise CannotReplay(
            f"problem_id(s) {missing[:5]} of selection.jsonl are not in {recipe.data['train']}"
        )
    chosen = [by_id[p] for p in problem_ids]
    rows = prepare_rl_rows(chosen, root, config.video_sampling(), config.prompt_template, check_videos=False)
    return [row["prompt"] for row in rows.rows]


def _batch_inputs(processor, sampling, prompts, completions: list[list[int]]):
    """(input_ids, attention_mask, video, valid) of prompts + right-padded completions, as the rollout builds them."""
    from videoktr.data.video import decode_video
    from videoktr.models.inputs import build_video_inputs
    from videoktr.training.rollout import prompt_text, prompt_video_frames, prompt_video_path

    cache: dict = {}
    videos = []
    for p in prompts:
        key = (prompt_video_path(p), tuple(prompt_video_frames(p) or ()))
        if key not in cache:
            cache[key] = decode_video(key[0], sampling, indices=list(key[1]) or None)
        videos.append(cache[key])
    batch = build_video_inputs(processor, [prompt_text(p) for p in prompts], videos, sampling=sampling)
    width = max(len(c) for c in completions)
    tokenizer = processor.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.tensor([c + [pad] * (width - len(c)) for c in completions], dtype=torch.long)
    valid = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in completions], dtype=torch.long)
    grid = batch["video_grid_thw"]
    temporal_patch = processor.video_processor.temporal_patch_size
    seconds = batch.get("second_per_grid_ts", [temporal_patch / v.sample_fps for v in videos])
    video = {
        "pixel_values_videos": list(torch.split(batch["pixel_values_videos"], grid.prod(-1).tolist())),
        "video_grid_thw": grid,
        "second_per_grid_ts": torch.as_tensor(seconds, dtype=torch.float32),
    }
    input_ids = torch.cat([batch["input_ids"], ids], dim=1)
    attention_mask = torch.cat([batch["attention_mask"], valid], dim=1)
    return input_ids, attention_mask, video, valid.bool()


def recorded_batch_gradients(
    run_dir: Path, checkpoint: Path, batches: dict[int, list[dict]], layers: int
) -> dict:
    """B.1 numbers of each recorded batch (step -> its scored ``selection.jsonl`` rows), recomputed with the
    checkpoint's weights. Raises UserError when the run cannot be replayed (no recipe, unknown problem ids)."""
    from videoktr.models.forwards import QwenVLForwards
    from videoktr.training.recipe import load_model, load_recipe, make_config

    recipe_path = run_dir / "recipe.yaml"
    if not recipe_path.is_file():
        raise CannotReplay(
            f"{recipe_path} is missing (videoktr train and demo write it); it names the training data"
        )
    recipe = load_recipe(recipe_path)
    config = make_config({**recipe.trainer, "output_dir": str(run_dir)})
    model, processor, _ = load_model(str(checkpoint), init_kwargs=config.model_init_kwargs)
    model.eval()  # no dropout: the numbers are a function of the checkpoint and the batch
    from trl.trainer.utils import add_fused_lm_head

    # the trainer's log-prob head (temperature-scaled, as GRPOTrainer patches the policy)
    add_fused_lm_head(model, temperature=config.temperature, cast_lm_head_to_fp32=config.cast_lm_head_to_fp32)
    forwards = QwenVLForwards(model.config, processor)
    names, params = last_layer_params(model, layers)
    aggregation = "token-mean" if config.aggregation == "token-mean-global" else config.aggregation
    out = {
        "aggregation": aggregation,
        "checkpoint": str(checkpoint),
        "layers": layers,
        "n_params": sum(p.numel() for p in params),
        "batches": [],
    }
    for step, rows in sorted(batches.items()):
        prompts = _prompts(recipe, config, [r["problem_id"] for r in rows])
        input_ids, attention_mask, video, valid = _batch_inputs(
            processor, config.video_sampling(), prompts, [r["completion_ids"] for r in rows]
        )
        features = forwards.video_features(model, video["pixel_values_videos"], video["video_grid_thw"])
        logp, _ = forwards.token_logps(
            model, input_ids, attention_mask, valid.size(1), video, features=features
        )
        selected = torch.zeros_like(valid)
        for i, r in enumerate(rows):
            selected[i, : len(r["union"])] = torch.tensor(r["union"], dtype=torch.bool)
        advantages = torch.tensor([r["advantage"] for r in rows])
        numbers = gradient_decomposition(
            logp, advantages, valid, selected, params, aggregation, config.max_completion_length
        )
        out["batches"].append({"step": step, "rows": len(rows), **numbers})
    out["mean"] = summarise(out["batches"])
    return out


def summarise(batches: list[dict]) -> dict[str, float | None]:
    """Mean of each B.1 number over the batches where it is defined (None if it never is)."""
    keys = [k for k in (batches[0] if batches else {}) if k not in ("step", "rows")]
    mean = {}
    for key in keys:
        values = [b[key] for b in batches if b[key] is not None and not math.isnan(b[key])]
        mean[key] = sum(values) / len(values) if values else None
    return mean
