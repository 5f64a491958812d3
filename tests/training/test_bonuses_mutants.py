"""``RewardBonusMixin`` (training/bonuses.py) on a host with hand-set rewards and a fake generation: the length bonus
and the T-GRPO bonus added to the accuracy column, per group, on the right rows, with the shuffled rollouts' inputs.
Written to kill the mutants of ``scripts/mutation.sh training/rollout`` (docs/testing.md); milliseconds per test.

The fake generation answers "right" when the pixels it is given are the prompt's video in order and "wrong"
otherwise; prompt 0's video moves (a shuffle changes it), prompt 1's is static (a shuffle leaves it as it is).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from videoktr.training.bonuses import RewardBonusMixin

from .hosts import HostBase, make_config

MOVING = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [2.0, 2.0], [5.0, 5.0], [6.0, 4.0]])  # 3 patches
STATIC = torch.tensor([[1.0, 1.0], [2.0, 0.0], [1.0, 1.0], [2.0, 0.0]])  # 2 identical patches
TEXT = {1: "right", 2: "wrong", 3: "skip"}


class Processor:
    video_processor = SimpleNamespace(temporal_patch_size=2)

    def batch_decode(self, ids, skip_special_tokens=False):
        assert skip_special_tokens
        return [TEXT[i[0]] for i in ids]


class RewardBase:
    """TRL's ``_calculate_rewards`` stand-in: (N, 2) rewards (fmt, acc) set by the test."""

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        self.base_calls.append((inputs, prompts, completions, completion_ids_list))
        return self.base_rewards.clone()


class Host(RewardBonusMixin, RewardBase, HostBase):
    pass


def answer(prompts, completions, solution, **columns):
    """1 when the completion says the row's solution, None for "skip" (no verdict), else 0."""
    assert all(p == prompts[0] for p in prompts) and set(columns) == {"problem_id"}
    assert len(completions) == len(prompts) == len(solution) == len(columns["problem_id"])  # TRL's contract
    assert all(c[0]["role"] == "assistant" for c in completions)
    return [
        None if c[0]["content"] == "skip" else float(c[0]["content"] == s)
        for c, s in zip(completions, solution)
    ]


def host(tmp_path, acc, fmt=None, group=2, **fields):
    fields = {"method": "t_grpo", "accuracy_reward": "answer", "length_bonus": False, **fields}
    h = Host(make_config(tmp_path, **fields), group=group)
    h.reward_func_names, h.reward_funcs = ["fmt", "answer"], [None, answer]
    n = len(acc)
    h.base_rewards = torch.tensor([fmt or [0.5] * n, acc], dtype=torch.float32).T.contiguous()
    h.base_calls, h.generations, h.tokenized = [], [], []
    h.processing_class = Processor()
    h.use_vllm = False
    h.forwards.family = SimpleNamespace(second_per_grid_ts=True)
    return h


def rollout(h, videos, group=2):
    """Rows, prompts and the rollout's video of ``len(videos)`` prompts x ``group``."""
    rows = [
        {"prompt": f"q{p}", "solution": "right", "problem_id": p}
        for p in range(len(videos))
        for _ in range(group)
    ]
    pixels = [v for v in videos for _ in range(group)]
    h._rollout_video = {
        "pixel_values_videos": pixels,
        "video_grid_thw": torch.tensor([[v.size(0) // 2, 1, 2] for v in pixels]),
        "second_per_grid_ts": torch.tensor([0.5 + p for p in range(len(videos)) for _ in range(group)]),
        "videos": [SimpleNamespace(frames=torch.arange(float(v.size(0))).view(-1, 1, 1, 1)) for v in pixels],
    }
    ordered = {f"q{p}": v for p, v in enumerate(videos)}

    def tokenize(prompts):
        h.tokenized.append(list(prompts))
        h._rollout_video = None  # TRL's tokenizer path replaces it
        return (
            [[100 + int(p[1:])] for p in prompts],
            None,
            {"mm_token_type_ids": [[0, int(p[1:])] for p in prompts]},
        )

    def generate(ids, images, batch, n):
        h.generations.append(dict(ids=ids, images=images, batch=batch, n=n, vllm=h._vllm_videos))
        sizes = batch["video_grid_thw"].prod(-1).tolist()
        seen = torch.split(batch["pixel_values_videos"], sizes)
        prompt = [f"q{i[0] - 100}" for i in ids]
        answers = h.answers if hasattr(h, "answers") else None
        out = []
        for k, p in enumerate(seen):
            if answers is not None:
                out.append([answers[k]])
            else:
                out.append([1 if torch.equal(p, ordered[prompt[k]]) else 2])
        return out, None

    h._tokenize_prompts, h._generate_single_turn = tokenize, generate
    return rows, [r["prompt"] for r in rows]


def completions(n):
    return [[{"role": "assistant", "content": "x"}] for _ in range(n)]


# --------------------------------------------------------------------------------------------- T-GRPO bonus
def test_bonus_per_group_to_the_correct_ordered_rows(tmp_path):
    # mu 0.8, alpha 0.3. Prompt 0 (moving): accuracy (1, 0.05) -> p_ordered 0.525 >= 0.8 * p_shuffled 0 -> bonus to
    # row 0 (1 > 0.1), not row 1 (0.05). Prompt 1 (static): accuracy (1, 0) -> 0.5 < 0.8 * 1 -> none.
    acc = [1.0, 0.05, 1.0, 0.0]
    h = host(tmp_path, acc, fmt=[0.1, 0.2, 0.3, 0.4], tgrpo_num_shuffled=2)
    rows, prompts = rollout(h, [MOVING, STATIC])
    rewards = h._calculate_rewards(rows, prompts, completions(4), [[1]] * 4)
    assert rewards[:, 1].tolist() == pytest.approx([1.3, 0.05, 1.0, 0.0])
    assert rewards[:, 0].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])  # the other reward untouched
    assert h._metrics["train"]["tgrpo/bonus_frac"] == [0.25]
    assert h._rollout_video is not None  # restored after the shuffled rollout's tokenization
    (call,) = h.generations
    assert call["n"] == 2 and call["images"] is None and call["vllm"] is None
    assert call["ids"] == [[100], [100], [101], [101]] and h.tokenized == [["q0", "q1"]]
    assert call["batch"]["mm_token_type_ids"] == [[0, 0], [0, 0], [0, 1], [0, 1]]
    assert call["batch"]["second_per_grid_ts"].tolist() == [0.5, 0.5, 1.5, 1.5]
    assert call["batch"]["video_grid_thw"].tolist() == [[3, 1, 2]] * 2 + [[2, 1, 2]] * 2


def test_shuffled_rollouts_see_one_block_permutation_per_prompt(tmp_path):
    h = host(tmp_path, [0.0] * 4, tgrpo_num_shuffled=2)
    rows, prompts = rollout(h, [MOVING, STATIC])
    h._calculate_rewards(rows, prompts, completions(4), [[1]] * 4)
    batch = h.generations[0]["batch"]
    seen = torch.split(batch["pixel_values_videos"], [6, 6, 4, 4])
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[2], STATIC) and torch.equal(seen[3], STATIC)
    blocks = MOVING.view(3, 2, 2)
    perms = [
        p
        for p in ([0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0])
        if torch.equal(seen[0], blocks[p].reshape(6, 2))
    ]
    assert len(perms) == 1  # the temporal patches (blocks of h*w = 2 pixel rows) permuted, not the identity


def test_threshold_compares_p_ordered_with_mu_times_p_shuffled(tmp_path):
    # static prompt 1 only (p_shuffled = 1): accuracy (1, 1) -> p_ordered 1 >= mu * 1 for mu = 1 (equality gives the
    # bonus), not for mu = 1.01
    for mu, expected in ((1.0, [1.5, 1.5]), (1.01, [1.0, 1.0])):
        h = host(tmp_path, [1.0, 1.0], tgrpo_mu=mu, tgrpo_alpha=0.5)
        rows, prompts = rollout(h, [STATIC])
        assert h._calculate_rewards(rows, prompts, completions(2), [[1]] * 2)[:, 1].tolist() == expected


def test_shuffled_accuracy_is_the_mean_of_the_verdicts(tmp_path):
    # 3 shuffled completions of prompt 0: right, skip (None: no verdict), wrong -> p_shuffled = 1/2; accuracy
    # (1, 1) of prompt 0 at G = 2 -> p_ordered 1 >= 1.9 * 0.5 = 0.95: bonus; at mu 2.1 (1.05): none.
    # Prompt 1: all 3 skipped -> p_shuffled 0 -> bonus to its correct row.
    for mu, expected in ((1.9, [1.3, 1.3, 1.3, 0.0]), (2.1, [1.0, 1.0, 1.3, 0.0])):
        h = host(tmp_path, [1.0, 1.0, 1.0, 0.0], tgrpo_num_shuffled=3, tgrpo_mu=mu)
        rows, prompts = rollout(h, [MOVING, MOVING])
        h.answers = [1, 3, 2, 3, 3, 3]
        rewards = h._calculate_rewards(rows, prompts, completions(4), [[1]] * 4)
        assert rewards[:, 1].tolist() == pytest.approx(expected)
        assert h.generations[0]["n"] == 3


@pytest.mark.parametrize("group, n", [(3, 1), (4, 2)])
def test_default_shuffled_count_is_half_the_group(tmp_path, group, n):
    h = host(tmp_path, [0.0] * 2 * group, group=group)  # max(1, G // 2) shuffled completions per prompt
    rows, prompts = rollout(h, [MOVING, STATIC], group=group)
    h._calculate_rewards(rows, prompts, completions(2 * group), [[1]] * 2 * group)
    assert h.generations[0]["n"] == n and len(h.generations[0]["ids"]) == 2 * n


def test_rows_of_a_later_process_and_groups_across_processes(tmp_path):
    # rank 1 of 2, 3 local rows, G = 2: global rows 3, 4, 5 -> row 3 ends global group 1 (its other row is on
    # rank 0), rows 4, 5 are group 2. Accuracy is global (6 rows); local rows read accuracy[3:6] = (1, 1, 0).
    # Local group [0] (global row 3): p_ordered 1 >= 0.8 * p_shuffled (moving: 0) -> bonus; group [1, 2]:
    # (1 + 0) / 2 >= 0 -> bonus to local row 1 only.
    h = host(tmp_path, [0.0, 0.0, 0.0, 1.0, 1.0, 0.0], tgrpo_num_shuffled=1)
    h.accelerator.process_index = 1
    h.accelerator.gather = lambda t: torch.cat([torch.zeros_like(t), t])  # rank 0's part, then this rank's
    rows, prompts = rollout(h, [MOVING, MOVING, MOVING])
    rows, prompts = rows[3:], prompts[3:]
    bonus = h._temporal_bonus(rows, prompts, torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 0.0]), 2)
    assert bonus.tolist() == pytest.approx([0.0, 0.0, 0.0, 0.3, 0.3, 0.0])
    assert h.tokenized == [["q1", "q2"]]  # the first row of each local group
    assert h._metrics["train"]["tgrpo/bonus_frac"] == [pytest.approx(2 / 6)]


def test_no_bonus_outside_training_or_without_video(tmp_path):
    h = host(tmp_path, [1.0, 0.0], group=2)
    rows, prompts = rollout(h, [MOVING])
    h.model.training = False
    h.num_generations_eval = 2
    assert h._calculate_rewards(rows, prompts, completions(2), [[1]] * 2)[:, 1].tolist() == [1.0, 0.0]
    h.model.training = True
    h._rollout_video = None
    assert h._calculate_rewards(rows, prompts, completions(2), [[1]] * 2)[:, 1].tolist() == [1.0, 0.0]
    assert not h.generations and not h._metrics["train"]


def test_no_bonus_for_other_methods_or_without_the_accuracy_reward(tmp_path):
    h = host(tmp_path, [1.0, 0.0], method="grpo")
    rows, prompts = rollout(h, [MOVING])
    assert h._calculate_rewards(rows, prompts, completions(2), [[1]] * 2)[:, 1].tolist() == [1.0, 0.0]
    h = host(
        tmp_path,
        [1.0, 0.0],
        length_bonus=True,
        length_bonus_min=1,
        length_bonus_max=9,
        length_bonus_min_correct=1,
    )
    h.reward_func_names = ["fmt", "other"]  # the accuracy reward is not among the rewards: nothing added
    rows, prompts = rollout(h, [MOVING])
    assert h._calculate_rewards(rows, prompts, completions(2), [[1]] * 2)[:, 1].tolist() == [1.0, 0.0]
    assert not h.generations and not h._metrics["train"]


def test_vllm_gets_the_same_shuffle_as_frames(tmp_path):
    # use_vllm: each shuffled row's clip, its frames with the same temporal-patch order (patch_size 2: frames
    # 2i, 2i+1 form patch i) and its rollout row
    h = host(tmp_path, [0.0] * 4, tgrpo_num_shuffled=2)
    h.use_vllm = True
    rows, prompts = rollout(h, [MOVING, STATIC])
    video = h._rollout_video
    h._calculate_rewards(rows, prompts, completions(4), [[1]] * 4)
    clips = h.generations[0]["vllm"]
    assert [c[2] for c in clips] == [0, 0, 2, 2] and h._vllm_videos is clips
    assert clips[0][0] is video["videos"][0] and clips[2][0] is video["videos"][2]
    seen = h.generations[0]["batch"]["pixel_values_videos"][:6].view(3, 2, 2)
    order = [next(j for j in range(3) if torch.equal(seen[i], MOVING.view(3, 2, 2)[j])) for i in range(3)]
    frames = clips[0][1].flatten().tolist()  # frames 0..5 in 3 patches of 2
    assert frames == [f for j in order for f in (2 * j, 2 * j + 1)]
    assert torch.equal(
        clips[2][1], torch.tensor([2.0, 3.0, 0.0, 1.0]).view(-1, 1, 1, 1)
    )  # static: still swapped


def test_families_without_second_per_grid_ts(tmp_path):
    h = host(tmp_path, [0.0] * 2)
    h.forwards.family.second_per_grid_ts = False
    rows, prompts = rollout(h, [MOVING])
    h._calculate_rewards(rows, prompts, completions(2), [[1]] * 2)
    assert "second_per_grid_ts" not in h.generations[0]["batch"] and h.generations[0]["vllm"] is None


def test_a_single_temporal_patch_is_not_shuffled(tmp_path):
    one = torch.tensor(
        [[1.0, 2.0], [3.0, 4.0]]
    )  # t = 1: no temporal order, the shuffled rollout sees the video
    h = host(tmp_path, [1.0, 1.0])
    h.use_vllm = True
    rows, prompts = rollout(h, [one])
    rewards = h._calculate_rewards(rows, prompts, completions(2), [[1]] * 2)
    assert torch.equal(h.generations[0]["batch"]["pixel_values_videos"], one)
    assert h.generations[0]["vllm"][0][1] is None  # no frame permutation for vLLM either
    assert rewards[:, 1].tolist() == pytest.approx([1.3, 1.3])  # p_shuffled 1: p_ordered 1 >= 0.8 * 1


# --------------------------------------------------------------------------------------------- length bonus
LENGTH = dict(
    method="grpo", length_bonus=True, length_bonus_min=4, length_bonus_max=8, length_bonus_value=0.25
)


def test_length_bonus_on_the_accuracy_column(tmp_path):
    # G = 3, bonus 0.25 for lengths 4..8 when >= 2 of the group are correct (> 0.1): group 0 accuracy (1, 1, 0):
    # row 0 (length 5) gets it, row 1 (length 9) is too long; group 1 (0, 0, 1): one correct -> none. The format
    # column (0, 0, 1, 1, 1, 1) would give rows 3, 4, 5 the bonus.
    h = host(tmp_path, [1.0, 1.0, 0.0, 0.0, 0.0, 1.0], fmt=[0.0, 0.0, 1.0, 1.0, 1.0, 1.0], group=3, **LENGTH)
    rows, prompts = rollout(h, [MOVING, STATIC], group=3)
    ids = [[7] * n for n in (5, 9, 5, 5, 5, 5)]
    rewards = h._calculate_rewards(rows, prompts, completions(6), ids)
    assert rewards[:, 1].tolist() == pytest.approx([1.25, 1.0, 0.0, 0.0, 0.0, 1.0])
    assert rewards[:, 0].tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0] and rewards.dtype == torch.float32
    assert h._metrics["train"]["reward/length_bonus_frac"] == [pytest.approx(1 / 6)]
    assert h.base_calls[0] == (rows, prompts, completions(6), ids) and not h.generations


@pytest.mark.parametrize("training, expected", [(True, [0, 0, 1, 1, 0, 0]), (False, [1, 0, 1, 0, 0, 0])])
def test_length_bonus_groups_by_the_modes_group_size(tmp_path, training, expected):
    # accuracy (1, 0, 1, 1, 0, 0), every length 5: training G = 2 -> groups (1, 0), (1, 1), (0, 0): rows 2, 3;
    # eval G = 3 -> (1, 0, 1), (1, 0, 0): rows 0, 2
    h = host(tmp_path, [1.0, 0.0, 1.0, 1.0, 0.0, 0.0], length_bonus_min_correct=2, **LENGTH)
    h.model.training = training
    rows, prompts = rollout(h, [MOVING, STATIC, MOVING])
    rewards = h._calculate_rewards(rows, prompts, completions(6), [[7] * 5] * 6)
    acc = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    assert (rewards[:, 1] - acc).tolist() == pytest.approx([0.25 * e for e in expected])
    assert h._metrics["train" if training else "eval"]["reward/length_bonus_frac"] == [pytest.approx(2 / 6)]


def test_length_bonus_min_correct_and_length_ends(tmp_path):
    # min_correct 1: every correct row with length in [4, 8] (ends included): accuracy (1, 1, 1, 0, 1, 1), lengths
    # (4, 8, 6, 6, 3, 9) -> rows 0, 1 and row 2 (the only correct row of its group); rows 4, 5 out of range.
    # min_correct 2 would leave row 2 out.
    h = host(tmp_path, [1.0, 1.0, 1.0, 0.0, 1.0, 1.0], **{**LENGTH, "length_bonus_min_correct": 1})
    rows, prompts = rollout(h, [MOVING, STATIC, MOVING])
    rewards = h._calculate_rewards(rows, prompts, completions(6), [[7] * n for n in (4, 8, 6, 6, 3, 9)])
    assert rewards[:, 1].tolist() == pytest.approx([1.25, 1.25, 1.25, 0.0, 1.0, 1.0])


def test_length_bonus_counts_each_processs_lengths(tmp_path):
    # the lengths are gathered like the rewards (rank 0's rows first): 2 local rows, 2 of the other rank (length 5)
    h = host(tmp_path, [1.0, 1.0, 1.0, 1.0], **{**LENGTH, "length_bonus_min_correct": 1})
    h.accelerator.gather = lambda t: torch.cat([torch.full_like(t, 5), t])
    rows, prompts = rollout(h, [MOVING])
    rewards = h._calculate_rewards(rows, prompts, completions(2), [[7] * 9, [7] * 6])
    assert rewards[:, 1].tolist() == pytest.approx([1.25, 1.25, 1.0, 1.25])


def test_shuffles_come_from_the_trainers_generator(tmp_path):
    from videoktr.core.perturbations import shuffle_permutation

    h = host(tmp_path, [0.0] * 2)
    h._ktr_generator.manual_seed(3)
    rows, prompts = rollout(h, [MOVING])
    h._calculate_rewards(rows, prompts, completions(2), [[1]] * 2)
    perm = shuffle_permutation(3, torch.Generator().manual_seed(3))
    seen = h.generations[0]["batch"]["pixel_values_videos"][:6]
    assert torch.equal(seen, MOVING.view(3, 2, 2)[perm].reshape(6, 2))
