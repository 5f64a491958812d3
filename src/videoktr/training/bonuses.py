"""Reward bonuses of ``KTRTrainer`` (METHOD 4-5): the Video-R1 length bonus and the T-GRPO temporal bonus, added to
the accuracy reward before TRL turns rewards into group advantages (``_calculate_rewards``).
"""

from __future__ import annotations

import torch

from videoktr.core.perturbations import shuffle_permutation
from videoktr.vllm.payload import patch_shuffled_video


class RewardBonusMixin:
    """Length and T-GRPO bonuses (mixed into ``KTRTrainer`` before ``GRPOTrainer``)."""

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.args.accuracy_reward not in self.reward_func_names:
            return rewards_per_func
        col = self.reward_func_names.index(self.args.accuracy_reward)
        mode = "train" if self.model.training else "eval"
        num_generations = self.num_generations if mode == "train" else self.num_generations_eval
        if self.args.method == "t_grpo" and self._rollout_video is not None and mode == "train":
            bonus = self._temporal_bonus(inputs, prompts, rewards_per_func[:, col], num_generations)
            rewards_per_func[:, col] = rewards_per_func[:, col] + bonus
        if self.args.length_bonus:
            from videoktr.rewards.length import length_bonus

            lengths = torch.tensor([len(ids) for ids in completion_ids_list], device=rewards_per_func.device)
            lengths = self.accelerator.gather(lengths).tolist()
            acc = rewards_per_func[:, col].tolist()
            bonus = length_bonus(
                acc,
                lengths,
                group_size=num_generations,
                min_len=self.args.length_bonus_min,
                max_len=self.args.length_bonus_max,
                bonus=self.args.length_bonus_value,
                min_correct=self.args.length_bonus_min_correct,
            )
            bonus_t = torch.tensor(bonus, dtype=rewards_per_func.dtype, device=rewards_per_func.device)
            self._metrics[mode]["reward/length_bonus_frac"].append((bonus_t > 0).float().mean().item())
            rewards_per_func[:, col] = rewards_per_func[:, col] + bonus_t
        return rewards_per_func

    def _temporal_bonus(self, inputs, prompts, accuracy: torch.Tensor, num_generations: int) -> torch.Tensor:
        """T-GRPO (Video-R1): per prompt, sample completions with shuffled frames and compare accuracies.

        accuracy: (N_global,) accuracy reward of the ordered completions. Returns (N_global,) bonus = alpha for
        ordered completions with accuracy > 0.1 in groups where p_ordered >= mu * p_shuffled, else 0.
        """
        video = self._rollout_video
        n_local = len(prompts)
        start = self.accelerator.process_index * n_local
        local_acc = accuracy[start : start + n_local]
        n_shuffled = self.args.tgrpo_num_shuffled or max(1, num_generations // 2)
        local_bonus = torch.zeros(n_local, device=accuracy.device)
        reward_fn = self.reward_funcs[self.reward_func_names.index(self.args.accuracy_reward)]
        group_starts = sorted(
            {(start + i) // num_generations * num_generations - start for i in range(n_local)}
        )
        groups = [list(range(max(g0, 0), min(g0 + num_generations, n_local))) for g0 in group_starts]
        shuffled_acc = self._shuffled_accuracies(
            inputs, prompts, video, [g[0] for g in groups], n_shuffled, reward_fn
        )
        for rows, p_shuffled in zip(groups, shuffled_acc, strict=True):
            p_ordered = local_acc[rows].mean().item()
            if p_ordered >= self.args.tgrpo_mu * p_shuffled:
                for i in rows:
                    if local_acc[i].item() > 0.1:
                        local_bonus[i] = self.args.tgrpo_alpha
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["tgrpo/bonus_frac"].append(
            self.accelerator.gather(local_bonus).gt(0).float().mean().item()
        )
        return self.accelerator.gather(local_bonus)

    def _shuffled_accuracies(self, inputs, prompts, video, rows, n_shuffled, reward_fn) -> list[float]:
        """For each row in ``rows`` (one per prompt): mean accuracy of ``n_shuffled`` completions sampled with
        that row's temporal patches permuted (one permutation per prompt). One generation call for all prompts."""
        prompt_ids, _, fields = self._tokenize_prompts([prompts[r] for r in rows])
        self._rollout_video = video  # _tokenize_prompts replaced it; restore the batch's video
        ids, mm, pixels, grids, seconds, clips = [], [], [], [], [], []
        temporal = self.processing_class.video_processor.temporal_patch_size
        for k, row in enumerate(rows):
            grid, rows_pixels = video["video_grid_thw"][row], video["pixel_values_videos"][row]
            t = int(grid[0])
            perm = shuffle_permutation(t, self._ktr_generator)
            if perm is not None:  # pixel rows are ordered (t, h, w): permute the t blocks of h*w rows
                rows_pixels = rows_pixels.view(t, -1, rows_pixels.size(-1))[perm].reshape_as(rows_pixels)
            ids += [prompt_ids[k]] * n_shuffled
            mm += [fields["mm_token_type_ids"][k]] * n_shuffled
            pixels += [rows_pixels] * n_shuffled
            grids += [grid] * n_shuffled
            seconds += [video["second_per_grid_ts"][row]] * n_shuffled
            if self.use_vllm:  # the same shuffle as frames for the vLLM request (videoktr.vllm.payload)
                clip = video["videos"][row]
                frames = None if perm is None else patch_shuffled_video(clip.frames, perm, temporal)
                clips += [(clip, frames, row)] * n_shuffled
        batch = {
            "pixel_values_videos": torch.cat(pixels),
            "video_grid_thw": torch.stack(grids),
            "mm_token_type_ids": mm,
        }
        if self.forwards.family.second_per_grid_ts:  # Qwen3-VL / Qwen3.5 take timestamps from the text
            batch["second_per_grid_ts"] = torch.stack(seconds)
        self._vllm_videos = clips if self.use_vllm else None
        completion_ids, _ = self._generate_single_turn(ids, None, batch, n_shuffled)
        texts = self.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
        accuracies = []
        for k, row in enumerate(rows):
            chunk = texts[k * n_shuffled : (k + 1) * n_shuffled]
            completions = [[{"role": "assistant", "content": text}] for text in chunk]
            columns = {key: [v] * n_shuffled for key, v in inputs[row].items() if key != "prompt"}
            values = reward_fn(prompts=[prompts[row]] * n_shuffled, completions=completions, **columns)
            values = [v for v in values if v is not None]
            accuracies.append(sum(values) / len(values) if values else 0.0)
        return accuracies
