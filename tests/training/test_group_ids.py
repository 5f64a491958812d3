"""The group index the trainer attaches to every row, and the whole-group computations that rely on it.

2 prompts x G = 3 (the ``ktr_rollout`` fixture): the rollout's rows are the 3 copies of prompt 0, then the 3 of
prompt 1, so the true group ids are row // 3 = (0, 0, 0, 1, 1, 1). A wrong reading of the row index gives another
vector (row % 3 = (0, 1, 2, 0, 1, 2), row // 2 = (0, 0, 1, 1, 2, 2)) and pools completions of different prompts.
"""

from __future__ import annotations

import torch

from videoktr import core
from videoktr.training.selection import read_selection_records

from .conftest import G3, batch_rows

TRUE_GROUPS = [0, 0, 0, 1, 1, 1]


def test_rollout_attaches_the_prompt_of_every_row(ktr_rollout):
    trainer, batch, _ = ktr_rollout
    assert batch["group_ids"].tolist() == TRUE_GROUPS
    # the rows of one group share the prompt, the two groups do not (the 2 synthetic questions differ)
    prompts = [tuple(ids[m.bool()].tolist()) for ids, m in zip(batch["prompt_ids"], batch["prompt_mask"])]
    assert prompts[0] == prompts[1] == prompts[2] and prompts[3] == prompts[4] == prompts[5]
    assert prompts[0] != prompts[3]
    # selection.jsonl names the same groups
    records = read_selection_records(f"{trainer.args.output_dir}/selection.jsonl")
    assert [r["group_id"] for r in records] == TRUE_GROUPS


def test_group_scope_mask_is_the_core_mask_of_the_true_groups(ktr_rollout):
    trainer, batch, captured = ktr_rollout
    args = trainer.args
    assert args.selection_scope == "group" and captured["rows"].tolist() == list(range(6))  # no group skipped
    valid = batch["completion_mask"].bool()
    fractions = {s: args.selection_fractions[s] for s in args.selection_signals}

    def mask(group_size, scope="group"):
        union, _ = core.key_token_mask(
            captured["scores"], valid, fractions, scope=scope, group_size=group_size,
            signal_valid=captured["signal_valid"],
        )  # fmt: skip
        return union & valid

    assert torch.equal(batch["ktr_token_mask"], mask(G3))
    # the check can fail: pooling other rows (groups of 2, or the whole batch) selects other tokens here
    assert not torch.equal(mask(G3), mask(2)) or not torch.equal(mask(G3), mask(None, "batch"))


def test_tw_weights_are_the_core_weights_of_the_true_groups(make_trainer, rows_of):
    # tw_weight_grad (the default): the loss forward groups a micro-batch's rows by their group_ids, whatever
    # order TRL's shuffle left them in. Rows given in the order (5, 0, 3, 1, 4, 2) with their attached ids must get
    # the weights core.tw_token_weights computes on the true groups (rows 0-2, rows 3-5) of the whole batch.
    trainer = make_trainer(method="tw_grpo", num_generations=G3, per_device_train_batch_size=2 * G3, beta=0.0)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    batch = trainer._generate_and_score_completions(rows_of(trainer))
    assert batch["group_ids"].tolist() == TRUE_GROUPS
    order = torch.tensor([5, 0, 3, 1, 4, 2])
    shuffled = batch_rows(batch, order)
    seen, original = {}, trainer._tw_policy_pass

    def spy(*a, **kw):
        logp, entropy, weights = original(*a, **kw)
        seen["weights"] = weights.detach()
        return logp, entropy, weights

    trainer._tw_policy_pass = spy
    trainer._compute_loss(trainer.model, shuffled)
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    valid = batch["completion_mask"].bool()
    with torch.no_grad():
        logits = trainer._full_logits(
            trainer.model, ids, mask, valid.size(1), trainer._batch_video(batch), None
        )
        expected = core.tw_token_weights(logits, valid, group_size=G3, alpha=trainer.args.tw_alpha)
        wrong = core.tw_token_weights(logits[[0, 1, 3, 4]], valid[[0, 1, 3, 4]], group_size=2)
    assert torch.allclose(seen["weights"], expected[order], rtol=0, atol=1e-5)
    # the check can fail: the weights of other groupings are not these
    assert not torch.allclose(wrong, expected[[0, 1, 3, 4]], atol=1e-3)
