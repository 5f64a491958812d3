"""Training at the shapes users run: selection and TW-GRPO weights over WHOLE groups, whatever the batching.

G = 8 completions per prompt and 4 completions per device, so one group spans two micro-batches and TRL's shuffle
scatters its rows over up to 8 of them. At each shape:
- the key-token mask every micro-batch's loss used equals the mask computed on the row's whole group from the
  recorded scores (selection.jsonl), and a per-micro-batch selection (the old behaviour) would differ;
- TW-GRPO's weights in every micro-batch equal those computed on the whole group;
- KTR with every fraction at 1.0 trains exactly as GRPO (parameters equal bit for bit).
"""

from __future__ import annotations

import json

import pytest
import torch

from videoktr import core
from videoktr.training.selection import read_selection_records

G = 8
# Each shape sees the 4 prompts once (one epoch): 2 whose groups have zero advantages, 2 with +-1.
SHAPES = {
    # 4 completions per device, accumulation 8 (steps_per_generation = 8): the paper recipe's per-device shape
    "accumulation_8": dict(per_device_train_batch_size=4, gradient_accumulation_steps=8, max_steps=1),
    # two optimiser steps per generation batch (old log-probs from the sampling policy)
    "steps_per_generation_4_accumulation_2": dict(
        per_device_train_batch_size=4, gradient_accumulation_steps=2, steps_per_generation=4, max_steps=4
    ),
    # every generation batch reused for two optimiser passes
    "num_iterations_2": dict(
        per_device_train_batch_size=4, gradient_accumulation_steps=4, num_iterations=2, max_steps=4
    ),
}


def half_moving(completions, problem_id, **kwargs) -> list[float]:
    """0, 1, 0, 1, ... for the prompts whose id ends in 'b', 0 for the others: half the groups have all-zero
    advantages (their attribution passes are skipped), the others +-1."""
    return [float(i % 2) if str(pid).endswith("b") else 0.0 for i, pid in enumerate(problem_id)]


@pytest.fixture(scope="module")
def four_prompts(synthetic_data, tmp_path_factory):
    """4 records (the 2 synthetic videos twice, ids suffixed a/b): a generation batch of 4 prompts x G = 8."""
    records = json.loads(synthetic_data["train"].read_text())
    rows = [{**r, "problem_id": f"{r['problem_id']}{s}"} for s in ("a", "b") for r in records]
    path = tmp_path_factory.mktemp("four") / "train.json"
    path.write_text(json.dumps(rows))
    return {"train": str(path), "root": str(synthetic_data["root"])}


def _capture(trainer) -> list[dict]:
    """Record, per loss call (micro-batch), each row's group, completion and mask / weights."""
    calls, original = [], trainer._compute_loss

    def wrapped(model, inputs):
        calls.append(
            {
                "group_ids": inputs["group_ids"].tolist(),
                "completion_ids": inputs["completion_ids"],
                "valid": inputs["completion_mask"].bool(),
                "mask": inputs.get("ktr_token_mask"),
                "weights": inputs.get("ktr_token_weights"),
            }
        )
        return original(model, inputs)

    trainer._compute_loss = wrapped
    return calls


def _rows(calls):
    """(group_id, completion ids) -> (mask or weights over valid tokens, index of its micro-batch)."""
    out = {}
    for k, call in enumerate(calls):
        for i, gid in enumerate(call["group_ids"]):
            length = int(call["valid"][i].sum())
            key = (gid, tuple(call["completion_ids"][i, :length].tolist()))
            value = call["mask"] if call["mask"] is not None else call["weights"]
            out[key] = (value[i, :length], k)
    return out


def _padded(rows: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    values = torch.zeros(len(rows), width, dtype=torch.float64)
    valid = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        values[i, : len(r)] = torch.tensor(r, dtype=torch.float64)
        valid[i, : len(r)] = True
    return values, valid


def _mask_from_scores(records: list[dict], fraction: float) -> torch.Tensor:
    """The KTR union mask of ``records`` (one scope) recomputed from their recorded scores, (n, T) bool."""
    signals = list(records[0]["scores"])
    scores, signal_valid = {}, {}
    for s in signals:
        scores[s], valid = _padded([r["scores"][s] for r in records])
        if s != "entropy":  # an unmoved token is no candidate below r = 1 (as the trainer)
            signal_valid[s] = scores[s] != 0
    union, _ = core.key_token_mask(
        scores,
        valid,
        {s: fraction for s in signals},
        scope="group",
        group_size=len(records),
        signal_valid=signal_valid,
    )
    return union


def _by_group(records):
    groups = {}
    for r in records:
        groups.setdefault((r["step"], r["group_id"]), []).append(r)
    return groups


@pytest.mark.parametrize("shape", list(SHAPES))
def test_group_scope_mask_is_the_whole_groups(make_trainer, four_prompts, shape):
    trainer = make_trainer(
        rewards=[half_moving],
        data=four_prompts,
        accuracy_reward="half_moving",
        method="ktr",
        num_generations=G,
        log_selected_examples=-1,
        **SHAPES[shape],
    )
    calls = _capture(trainer)
    trainer.train()
    records = read_selection_records(f"{trainer.args.output_dir}/selection.jsonl")
    used = _rows(calls)
    groups = _by_group(records)
    assert len(groups) >= 4 and all(len(g) == G for g in groups.values())
    skipped = [g for g in groups.values() if g[0]["skipped"]]
    scored = [g for g in groups.values() if not g[0]["skipped"]]
    assert skipped and scored  # the '...a' prompts have all-zero advantages: skipped; the '...b' ones scored
    assert all(r["advantage"] == 0.0 and r["union"] is None for g in skipped for r in g)
    old_behaviour_differs = False
    for group in scored:
        whole = _mask_from_scores(group, 0.2)
        for i, record in enumerate(group):
            n = len(record["completion_ids"])
            assert whole[i, :n].tolist() == record["union"]
            mask, _ = used[(record["group_id"], tuple(record["completion_ids"]))]
            assert mask.tolist() == record["union"]  # the loss used the whole group's mask
        # the old behaviour: each micro-batch took the rows of the group it happened to hold as the group
        batches = {}
        for i, record in enumerate(group):
            batches.setdefault(used[(record["group_id"], tuple(record["completion_ids"]))][1], []).append(i)
        assert len(batches) > 1  # the group was split over micro-batches
        for rows in batches.values():
            part = _mask_from_scores([group[i] for i in rows], 0.2)
            for k, i in enumerate(rows):
                n = len(group[i]["completion_ids"])
                old_behaviour_differs |= part[k, :n].tolist() != whole[i, :n].tolist()
    assert old_behaviour_differs  # so this test fails against per-micro-batch selection


@pytest.mark.parametrize("shape", list(SHAPES))
def test_tw_grpo_weights_are_the_whole_groups(make_trainer, four_prompts, shape):
    trainer = make_trainer(
        data=four_prompts,
        method="tw_grpo",
        tw_weight_grad=False,
        num_generations=G,
        beta=0.0,
        **SHAPES[shape],
    )  # weights without gradient: computed at the rollout on whole groups, whatever the batching
    calls = _capture(trainer)
    reference, attach = {}, trainer._attach_selection

    def attach_and_recompute(output, video):  # the generation batch before TRL shuffles it
        attach(output, video)
        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        valid = output["completion_mask"].bool()
        for start in range(0, ids.size(0), G):
            rows = torch.arange(start, start + G)
            group_video = {k: [video[k][i] for i in rows] if isinstance(video[k], list) else video[k][rows]
                           for k in video}  # fmt: skip
            with torch.no_grad():
                logits = trainer._full_logits(
                    trainer.model, ids[rows], mask[rows], valid.size(1), group_video, None
                )
            weights = core.tw_token_weights(logits, valid[rows], group_size=G, alpha=trainer.args.tw_alpha)
            partial = core.tw_token_weights(logits[:4], valid[rows][:4], group_size=4)
            for i, row in enumerate(rows.tolist()):
                n = int(valid[row].sum())
                key = (int(output["group_ids"][row]), tuple(output["completion_ids"][row, :n].tolist()))
                reference[key] = (weights[i, :n], partial[i, :n] if i < 4 else None)

    trainer._attach_selection = attach_and_recompute
    trainer.train()
    used = _rows(calls)
    assert used.keys() == reference.keys()
    old_behaviour_differs = False
    for key, (weights, partial) in reference.items():
        assert torch.allclose(used[key][0], weights, rtol=0, atol=1e-6), key
        if partial is not None:
            old_behaviour_differs |= not torch.allclose(partial, weights, atol=1e-4)
    assert old_behaviour_differs  # weights of half a group (one micro-batch) are not the group's


@pytest.mark.parametrize("shape", list(SHAPES))
def test_ktr_with_every_fraction_one_trains_as_grpo(make_trainer, four_prompts, shape):
    params = {}
    for method in ("grpo", "ktr"):
        trainer = make_trainer(
            data=four_prompts,
            method=method,
            num_generations=G,
            beta=0.04,
            ktr_visual_fraction=1.0,
            ktr_temporal_fraction=1.0,
            ktr_entropy_fraction=1.0,
            **SHAPES[shape],
        )
        trainer.train()
        params[method] = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    assert params["grpo"].keys() == params["ktr"].keys()
    assert all(torch.equal(params["grpo"][n], params["ktr"][n]) for n in params["grpo"])
