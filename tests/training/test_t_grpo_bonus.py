"""T-GRPO's temporal bonus (METHOD 5) through ``KTRTrainer._calculate_rewards``, with a reward that depends on the
frames' order: which rows get the bonus, p_ordered per group, and the shuffled rollout's pixels.

The model's generation is replaced at its boundary (``_generate_single_turn``) by one that answers "right" when
the pixels it is given are the video's frames in order and "wrong" otherwise, so the shuffled rollouts of the
moving synthetic video score 0 and those of the static one (its 2 temporal patches are identical: a shuffle leaves
its pixels as they are) score 1. The ordered completions are written by the test, per row.
"""

from __future__ import annotations

from itertools import permutations

import pytest
import torch

from .conftest import G3

RIGHT, WRONG = "right", "wrong"


def order_reward(completions, **kwargs) -> list[float]:
    """1 for the completion "right", 0 otherwise (what it says depends on the frames' order it saw)."""
    return [float(c[0]["content"].strip() == RIGHT) for c in completions]


def _moving(pixels, grid) -> bool:
    t = int(grid[0])
    patches = pixels.view(t, -1, pixels.size(-1))
    return not all(torch.equal(patches[0], patches[i]) for i in range(1, t))


@pytest.fixture(scope="module")
def t_grpo(make_trainer, rows_of):
    trainer = make_trainer(
        rewards=[order_reward], accuracy_reward="order_reward", method="t_grpo", num_generations=G3,
        per_device_train_batch_size=2 * G3, tgrpo_num_shuffled=2,
    )  # fmt: skip
    trainer.model.train()
    rows = rows_of(trainer)  # 2 prompts x G = 3, each prompt's copies contiguous
    prompts = [row["prompt"] for row in rows]
    trainer._tokenize_prompts(prompts)  # what TRL's rollout does first: the rows' video tensors
    video = trainer._rollout_video
    ordered = [p.clone() for p in video["pixel_values_videos"]]
    moving = [_moving(ordered[g * G3], video["video_grid_thw"][g * G3]) for g in (0, 1)]
    assert sorted(moving) == [False, True]  # one static and one moving synthetic video
    tok = trainer.processing_class.tokenizer
    ids = {text: tok.encode(text, add_special_tokens=False) for text in (RIGHT, WRONG)}
    assert all(tok.decode(v, skip_special_tokens=True).strip() == t for t, v in ids.items())
    calls = []

    def generate(prompt_ids, images, fields, num_generations, has_tool_images=False):
        sizes = fields["video_grid_thw"].prod(-1).tolist()
        seen = list(torch.split(fields["pixel_values_videos"], sizes))
        calls.append({"pixels": seen, "grid": fields["video_grid_thw"], "n": num_generations})
        # row k is one of the num_generations (= tgrpo_num_shuffled) rows of prompt k // num_generations
        out = [
            ids[RIGHT if torch.equal(p, ordered[k // num_generations * G3]) else WRONG]
            for k, p in enumerate(seen)
        ]
        return out, None

    trainer._generate_single_turn = generate
    return trainer, rows, prompts, ordered, moving, calls


def _bonus(t_grpo, right_rows, mu):
    trainer, rows, prompts, ordered, _, calls = t_grpo
    calls.clear()
    trainer.args.tgrpo_mu, saved = mu, trainer.args.tgrpo_mu
    try:
        completions = [
            [{"role": "assistant", "content": RIGHT if i in right_rows else WRONG}] for i in range(6)
        ]
        rewards = trainer._calculate_rewards(rows, prompts, completions, [[1, 2]] * 6)
    finally:
        trainer.args.tgrpo_mu = saved
    accuracy = torch.tensor([float(i in right_rows) for i in range(6)])
    return (rewards[:, 0] - accuracy).tolist()


def _rows(moving, group_is_moving: bool, copies) -> set[int]:
    g = moving.index(group_is_moving)
    return {g * G3 + c for c in copies}


def test_bonus_goes_to_the_right_rows_with_p_ordered_per_group(t_grpo):
    # mu = 0.5. Moving group: copies 0 and 1 right -> p_ordered = 2/3; its shuffled rollouts see permuted frames
    # -> "wrong" -> p_shuffled = 0 -> 2/3 >= 0.5 * 0: bonus 0.3 to copies 0 and 1 (accuracy 1 > 0.1), not copy 2.
    # Static group: copy 1 right -> p_ordered = 1/3; shuffled = ordered pixels -> p_shuffled = 1 -> 1/3 < 0.5:
    # no bonus. A p_ordered taken over the whole local batch (3 right of 6 = 0.5 >= 0.5 * 1) would give the static
    # group's right copy the bonus too.
    _, _, _, _, moving, _ = t_grpo
    right = _rows(moving, True, (0, 1)) | _rows(moving, False, (1,))
    bonus = _bonus(t_grpo, right, mu=0.5)
    expected = [0.3 if i in _rows(moving, True, (0, 1)) else 0.0 for i in range(6)]
    assert bonus == pytest.approx(expected)


def test_no_bonus_when_shuffling_does_not_hurt(t_grpo):
    # mu = 0.8, moving group copies 1 and 2 right (p_ordered = 2/3, p_shuffled = 0 -> bonus to both); static group
    # copies 0 and 1 right (2/3 < 0.8 * 1 -> none). Shuffled rollouts generated from the ordered pixels would
    # score 1 for the moving video too -> 2/3 < 0.8: no bonus anywhere.
    _, _, _, _, moving, _ = t_grpo
    right = _rows(moving, True, (1, 2)) | _rows(moving, False, (0, 1))
    bonus = _bonus(t_grpo, right, mu=0.8)
    assert bonus == pytest.approx([0.3 if i in _rows(moving, True, (1, 2)) else 0.0 for i in range(6)])


def test_shuffled_rollout_sees_each_prompts_frames_permuted(t_grpo):
    trainer, _, _, ordered, moving, calls = t_grpo
    _bonus(t_grpo, set(), mu=0.8)
    assert len(calls) == 1 and calls[0]["n"] == 2  # one generation call: 2 prompts x tgrpo_num_shuffled = 2
    pixels, grid = calls[0]["pixels"], calls[0]["grid"]
    for g in (0, 1):
        reference = ordered[g * G3]
        t = int(grid[2 * g][0])
        blocks = reference.view(t, -1, reference.size(-1))
        for k in (2 * g, 2 * g + 1):  # the n_shuffled rows of prompt g: one permutation per prompt
            assert torch.equal(pixels[k], pixels[2 * g])
            seen = pixels[k].view(t, -1, reference.size(-1))
            # the shuffled video is the ordered one's temporal patches in some order (pixel rows are (t, h, w))
            orders = [p for p in permutations(range(t)) if torch.equal(seen, blocks[list(p)])]
            assert orders
        if moving[g]:  # distinct patches really permuted: the identity is not among the orders that match
            assert tuple(range(t)) not in orders and not torch.equal(pixels[2 * g], reference)
