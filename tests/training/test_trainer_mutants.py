"""``KTRTrainer``'s own methods (training/trainer.py) without building TRL's trainer: ``__init__`` around a stand-in
``GRPOTrainer.__init__``, the dataset / reward checks, and the loss of one micro-batch on the fake model of
``hosts.py`` against ``core.policy_loss``. Written to kill the mutants of ``scripts/mutation.sh training/rollout``
(docs/testing.md); milliseconds per test. The tiny-model runs of the same code: tests/training/test_trainer.py,
test_accumulation.py, test_entropy_logging.py, test_tw_grpo_method.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from trl import GRPOTrainer

import videoktr.models.qwen2_5_vl as qwen
import videoktr.models.tiny as tiny
from videoktr import core
from videoktr.errors import UserError
from videoktr.training import trainer as trainer_module
from videoktr.training.trainer import IMAGE_KEYS, KTRTrainer
from videoktr.training.vllm_rollout import VideoLLM

from .hosts import FakeAccelerator, FakeForwards, fake_entropy, fake_logits, fake_logps, make_config


def alternating(completions, **kwargs):
    return [float(i % 2) for i in range(len(completions))]


class Rows:
    """A dataset with columns (``column_names``, ``ds["prompt"]``) like ``datasets.Dataset``."""

    def __init__(self, rows):
        self.rows = rows
        self.column_names = sorted({k for r in rows for k in r})

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, key):
        return [r.get(key) for r in self.rows] if isinstance(key, str) else self.rows[key]


def video_row():
    return {
        "prompt": [
            {"role": "user", "content": [{"type": "video", "video": "a.mp4"}, {"type": "text", "text": "q"}]}
        ]
    }


def image_row(image="img"):
    return {
        "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}],
        "image": image,
    }


def text_row():
    return {"prompt": [{"role": "user", "content": "q"}]}


@pytest.fixture
def grpo_init(monkeypatch):
    """GRPOTrainer.__init__ stand-in: records its arguments and the engine class in force, sets what TRL would."""
    from trl.generation import vllm_generation

    seen = {}

    def engine_class(**kwargs):
        return kwargs

    monkeypatch.setattr(vllm_generation, "LLM", engine_class, raising=False)

    def init(self, model, reward_funcs, args, processing_class, **kwargs):
        seen.update(model=model, reward_funcs=reward_funcs, args=args, processing_class=processing_class,
                    kwargs=kwargs, engine=vllm_generation.LLM, generation_kwargs=dict(args.generation_kwargs))  # fmt: skip
        self.args, self.model, self.accelerator = (
            args,
            SimpleNamespace(config="model-config"),
            FakeAccelerator(),
        )
        self.accelerator.process_index = seen.get("rank", 0)
        self.accelerator.is_main_process = seen.get("main", True)
        self.reward_func_names = [getattr(f, "__name__", "f") for f in reward_funcs]
        self.train_dataset = kwargs.get("train_dataset")
        self.use_vllm = args.use_vllm
        self.vllm_generation = SimpleNamespace(llm="the engine")

    monkeypatch.setattr(GRPOTrainer, "__init__", init)
    monkeypatch.setattr(
        tiny, "vision_token_ids", lambda processor: [9, 7, 9] if processor in ("processor", "p") else []
    )
    monkeypatch.setattr(
        trainer_module, "QwenVLForwards", lambda config, processor: ("forwards", config, processor)
    )
    return seen


def test_init_wires_the_rewards_generation_and_state(tmp_path, grpo_init, capsys):
    args = make_config(
        tmp_path, generation_kwargs={"suppress_tokens": [3, 7], "top_k": 5}, seed=4, length_bonus=False
    )
    t = KTRTrainer(
        "model",
        ["accuracy", alternating],
        args,
        processing_class="processor",
        train_dataset=Rows([video_row()]),
    )
    from videoktr.rewards import get_reward

    assert grpo_init["model"] == "model" and grpo_init["processing_class"] == "processor"
    assert grpo_init["reward_funcs"] == [get_reward("accuracy"), alternating] and grpo_init["args"] is args
    assert (
        grpo_init["kwargs"] == {"train_dataset": t.train_dataset}
        and grpo_init["engine"].__name__ == "engine_class"
    )
    # the vision tokens are suppressed on top of the user's (sorted, once each)
    assert grpo_init["generation_kwargs"] == {"suppress_tokens": [3, 7, 9], "top_k": 5}
    assert t.forwards == ("forwards", "model-config", "processor")
    assert t.sampling == args.video_sampling() and t._rollout_video is None and t.skipped_videos == []
    assert t._vllm_videos is None and t._record_generation is False and t._generation_scores is None
    assert t.vllm_generation.llm == "the engine"  # no vLLM: not wrapped
    assert torch.equal(
        torch.rand(3, generator=t._ktr_generator), torch.rand(3, generator=torch.Generator().manual_seed(4))
    )
    assert capsys.readouterr().out == f"videoktr loss settings: {args.effective_loss_settings()}\n"


def test_init_on_another_rank_seeds_its_own_generator_and_prints_nothing(tmp_path, grpo_init, capsys):
    grpo_init.update(rank=2, main=False)
    args = make_config(tmp_path, seed=4, length_bonus=False)
    t = KTRTrainer("model", alternating, args, processing_class="processor")
    assert grpo_init["reward_funcs"] == [alternating]
    assert grpo_init["generation_kwargs"] == {"suppress_tokens": [7, 9]}
    expected = torch.Generator().manual_seed(4 + 7919 * 2)
    assert torch.equal(torch.rand(3, generator=t._ktr_generator), torch.rand(3, generator=expected))
    assert capsys.readouterr().out == ""


def test_init_with_vllm(tmp_path, grpo_init):
    args = make_config(tmp_path, generation_kwargs={"suppress_tokens": [3]}, length_bonus=False)
    args.use_vllm = True  # (the config would check that vLLM is installed)
    t = KTRTrainer(
        "model", [alternating], args, processing_class="processor", train_dataset=Rows([video_row()])
    )
    assert grpo_init["generation_kwargs"] == {"logit_bias": {3: -100.0, 7: -100.0, 9: -100.0}}
    # the video engine class while TRL builds it
    assert grpo_init["engine"]() == {"limit_mm_per_prompt": {"image": 0, "video": 1}}
    assert isinstance(t.vllm_generation.llm, VideoLLM) and t.vllm_generation.llm._llm == "the engine"


def test_init_refuses_bad_arguments(tmp_path, grpo_init):
    with pytest.raises(TypeError, match="^KTRTrainer needs a KTRConfig, got SimpleNamespace$"):
        KTRTrainer("model", [alternating], SimpleNamespace(), processing_class="p")
    with pytest.raises(
        ValueError, match=r"^KTRTrainer needs processing_class=<the model's processor> to build video "
    ):
        KTRTrainer("model", [alternating], make_config(tmp_path))


@pytest.mark.parametrize("fields", [{"length_bonus": True}, {"method": "t_grpo", "length_bonus": False}])
def test_bonus_needs_the_accuracy_reward(tmp_path, grpo_init, fields):
    args = make_config(tmp_path, accuracy_reward="acc", **fields)
    with pytest.raises(UserError, match=r"^accuracy_reward='acc' is not among the reward functions \['alternating'\]; "
                                        r"the length / T-GRPO bonus is added to it\. Add it to the rewards or set "
                                        r"length_bonus=False\.$"):  # fmt: skip
        KTRTrainer("model", [alternating], args, processing_class="p")
    KTRTrainer(
        "model",
        [alternating],
        make_config(tmp_path, accuracy_reward="alternating", **fields),
        processing_class="p",
    )
    KTRTrainer(
        "model",
        [alternating],
        make_config(tmp_path, accuracy_reward="acc", length_bonus=False),
        processing_class="p",
    )


# ------------------------------------------------------------------------------------------ dataset checks
def checked(tmp_path, grpo_init, dataset, **fields):
    args = make_config(tmp_path, length_bonus=False, accuracy_reward="alternating", **fields)
    return KTRTrainer("model", [alternating], args, processing_class="p", train_dataset=dataset)


@pytest.mark.parametrize("dataset", [None, Rows([]), iter([text_row()])])
def test_no_dataset_to_check(tmp_path, grpo_init, dataset):
    checked(tmp_path, grpo_init, dataset)  # ktr's temporal signal would be refused on text rows


def test_videos_pass_and_mixed_modalities_are_refused(tmp_path, grpo_init):
    checked(tmp_path, grpo_init, Rows([video_row(), video_row()]), method="t_grpo")
    rows = [
        video_row(),
        video_row(),
        image_row(),
        {**image_row(), "image": None},
        {**image_row(), "image": []},
    ]
    with pytest.raises(UserError, match=r"^the train dataset mixes 2 video and 1 image prompts; a batch would mix them, "
                                        r"which KTRTrainer cannot train in one forward yet: train the image and the "
                                        r"video records in separate runs \(or as separate datasets one after the "
                                        r"other\)$"):  # fmt: skip
        checked(tmp_path, grpo_init, Rows(rows))
    both = [video_row(), {**image_row(None), "images": ["a", "b"]}, image_row()]
    with pytest.raises(UserError, match="mixes 1 video and 2 image prompts"):  # "image" and "images" columns
        checked(tmp_path, grpo_init, Rows(both))


def test_a_list_of_rows_is_checked_too(tmp_path, grpo_init):
    checked(tmp_path, grpo_init, [video_row()])
    with pytest.raises(UserError, match=r"ktr_signals \['temporal', 'visual'\] need video prompts"):
        checked(tmp_path, grpo_init, [text_row()])
    with pytest.raises(UserError, match=r"ktr_signals \['temporal'\] need video prompts.*\(image prompts\)"):
        checked(tmp_path, grpo_init, [image_row()])  # the first row's keys are the columns


def test_vllm_needs_videos(tmp_path, grpo_init):
    args = make_config(tmp_path, length_bonus=False)
    args.use_vllm = True
    with pytest.raises(UserError, match=r"^use_vllm: true sends video prompts to vLLM, but the train dataset has none; "
                                        r"set use_vllm: false$"):  # fmt: skip
        KTRTrainer("model", [alternating], args, processing_class="p", train_dataset=Rows([text_row()]))


@pytest.mark.parametrize(
    "rows, fields, message",
    [
        (
            [image_row()],
            {},
            r"^ktr_signals \['temporal'\] need video prompts, but the train dataset has none \(image "
            r"prompts\); set ktr_signals: \[visual, entropy\] or method: grpo$",
        ),
        (
            [text_row()],
            {},
            r"^ktr_signals \['temporal', 'visual'\] need video prompts, but the train dataset has none "
            r"\(text prompts\); set ktr_signals: \[entropy\] or method: grpo$",
        ),
        (
            [text_row()],
            {"ktr_signals": ["visual"]},
            r"ktr_signals \['visual'\] need video prompts.*\(text prompts\)",
        ),
        (
            [image_row()],
            {"method": "t_grpo"},
            r"^method='t_grpo' shuffles video frames, but the train dataset has no "
            r"video prompts; use method: grpo for image or text data$",
        ),
        ([text_row()], {"method": "t_grpo"}, "method='t_grpo' shuffles video frames"),
    ],
)
def test_signals_and_methods_that_need_video_are_refused(tmp_path, grpo_init, rows, fields, message):
    with pytest.raises(UserError, match=message):
        checked(tmp_path, grpo_init, Rows(rows), **fields)


@pytest.mark.parametrize(
    "rows, fields",
    [
        ([image_row()], {"ktr_signals": ["visual", "entropy"]}),
        ([text_row()], {"ktr_signals": ["entropy"]}),
        ([text_row()], {"method": "grpo"}),
        ([image_row()], {"method": "entropy"}),
        (
            [{"prompt": image_row()["prompt"], "images": ["a"]}],
            {"ktr_signals": ["visual"]},
        ),  # an "images" column
        ([{**image_row(), "image": None}], {"ktr_signals": ["visual"]}),
    ],
)
def test_what_image_and_text_data_can_train(tmp_path, grpo_init, rows, fields):
    checked(tmp_path, grpo_init, Rows(rows), **fields)


# ------------------------------------------------------------------------------------------ small helpers
def bare(tmp_path, **fields) -> KTRTrainer:
    """A KTRTrainer whose attributes are set by hand (no TRL __init__): the fake model of hosts.py."""
    t = KTRTrainer.__new__(KTRTrainer)
    t.args = make_config(tmp_path, length_bonus=False, **fields)
    t.model = SimpleNamespace(training=True)
    t.accelerator = FakeAccelerator()
    t.forwards = FakeForwards()
    t.forwards.merge_size, t.forwards.video_token_id = 2, 151656
    t.forwards.video_features = lambda inner, rows, grid: (inner, tuple(r.float() * 1.0 for r in rows), grid)
    t.forwards.mm_token_type_ids = lambda ids: ids * 0 + 2
    t._metrics = {
        "train": __import__("collections").defaultdict(list),
        "eval": __import__("collections").defaultdict(list),
    }
    t.temperature, t.beta = t.args.temperature, t.args.beta
    t.epsilon_low, t.epsilon_high = t.args.epsilon, t.args.epsilon_high or t.args.epsilon
    t.max_completion_length = 5
    t.num_generations = 2
    t.current_gradient_accumulation_steps = 1
    t._rollout_video = None
    return t


def test_batch_video_keeps_the_video_fields(tmp_path):
    t = bare(tmp_path)
    assert t._batch_video({"completion_ids": 1}) is None
    inputs = {"pixel_values_videos": 1, "video_grid_thw": 2, "second_per_grid_ts": 3, "pixel_values_videos_shuffled": 4,
              "advantages": 5}  # fmt: skip
    assert t._batch_video(inputs) == {"pixel_values_videos": 1, "video_grid_thw": 2, "second_per_grid_ts": 3,
                                      "pixel_values_videos_shuffled": 4}  # fmt: skip
    assert t._batch_video({"pixel_values_videos": 1}) == {"pixel_values_videos": 1}


def test_model_helpers_delegate_to_the_family_forwards(tmp_path, monkeypatch):
    t = bare(tmp_path)
    monkeypatch.setattr(qwen, "find_vl_model", lambda m: ("inner", m))
    t.accelerator.unwrap_model = lambda m: ("unwrapped", m)
    assert t._inner_model() == ("inner", ("unwrapped", t.model))
    assert t._inner_model("other") == ("inner", ("unwrapped", "other"))
    assert t._merge_size == 2 and t._video_token_id() == 151656
    assert t._mm_token_type_ids(torch.tensor([1, 2])).tolist() == [2, 2]
    inner, rows, grid = t._video_features("policy", [torch.ones(2)], "grid")
    assert inner == ("inner", ("unwrapped", "policy")) and rows[0].tolist() == [1.0, 1.0] and grid == "grid"


def test_loss_metrics_are_renamed_gathered_and_nan_aware(tmp_path):
    # 2 processes: this one's values, then the other's (NaN clip ratio: no token of its kind there);
    # entropy = sum over valid tokens / their count
    t = bare(tmp_path)
    t.accelerator.gather = lambda v: torch.cat([v, torch.tensor([0.5, float("nan"), 3.0])])
    metrics = {"loss/kl": torch.tensor([0.1, 0.3]), "clip/ratio_low": float("nan"), "loss/policy": 1.0}
    entropy = torch.tensor([[1.0, 2.0, 9.0], [3.0, 9.0, 9.0]])
    valid = torch.tensor([[1, 1, 0], [1, 0, 0]]).bool()
    t._log_loss_metrics("eval", metrics, entropy, valid)
    logged = t._metrics["eval"]
    # sorted names: clip_ratio/low_mean, kl, loss/policy -> (nan, 0.2, 1.0) and (0.5, nan, 3.0)
    assert logged["clip_ratio/low_mean"] == [0.5] and logged["kl"] == [pytest.approx(0.2)]
    assert logged["loss/policy"] == [2.0] and logged["entropy"] == [pytest.approx(2.0)]  # (1 + 2 + 3) / 3
    assert set(logged) == {"clip_ratio/low_mean", "kl", "loss/policy", "entropy"} and not t._metrics["train"]


def test_entropy_of_one_valid_token(tmp_path):
    t = bare(tmp_path)
    t._log_loss_metrics("train", {}, torch.tensor([[3.0, 9.0]]), torch.tensor([[True, False]]))
    assert t._metrics["train"]["entropy"] == [3.0]


def test_entropy_of_no_valid_token_is_zero(tmp_path):
    t = bare(tmp_path)
    t._log_loss_metrics("train", {}, torch.ones(1, 2), torch.zeros(1, 2).bool())
    assert dict(t._metrics["train"]) == {"entropy": [0.0]}
    t._log_loss_metrics(
        "train",
        {"clip/region": torch.tensor(0.25), "clip/ratio_high": 1},
        torch.ones(1, 1),
        torch.ones(1, 1).bool(),
    )
    assert t._metrics["train"]["clip_ratio/region_mean"] == [0.25] and t._metrics["train"][
        "clip_ratio/high_mean"
    ] == [1.0]


# ---------------------------------------------------------------------------------------------- the loss
MOVING = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [2.0, 2.0]])
STATIC = torch.tensor([[1.0, 1.0], [2.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
VALID = MASK.bool()


def micro_batch(video=True):
    out = {
        "prompt_ids": torch.tensor([[1, 3, 3], [1, 3, 3], [2, 3, 3], [2, 3, 3]]),
        "prompt_mask": torch.tensor([[1, 1, 1], [1, 1, 1], [0, 1, 1], [0, 1, 1]]),
        "completion_ids": torch.tensor([[5, 7, 2, 9, 4], [6, 8, 1, 0, 0], [4, 6, 9, 5, 0], [7, 2, 6, 8, 1]]),
        "completion_mask": MASK.clone(),
        "advantages": torch.tensor([1.0, -1.0, 0.5, -0.5]),
        "old_per_token_logps": -torch.full((4, 5), 0.3),
        "ref_per_token_logps": -torch.full((4, 5), 0.2),
        "num_items_in_batch": torch.tensor(40.0),
        "group_ids": torch.tensor([0, 0, 1, 1]),
    }
    if video:
        out["pixel_values_videos"] = [MOVING, MOVING, STATIC, STATIC]
        out["video_grid_thw"] = torch.tensor([[2, 1, 2]] * 4)
        out["second_per_grid_ts"] = torch.tensor([0.5, 0.5, 1.0, 1.0])
    return out


def loss_host(tmp_path, monkeypatch, **fields):
    t = bare(tmp_path, **fields)
    monkeypatch.setattr(qwen, "find_vl_model", lambda m: ("inner", m))
    t.model = SimpleNamespace(training=True, name="policy")
    t.forwards.policy, t.forwards.autocast = t.model, t.accelerator.autocast
    seen = []

    def video_features(inner, rows, grid):
        seen.append((inner, grid))
        return tuple(r.float() * 1.0 for r in rows)

    t.forwards.video_features = video_features
    t.vision_calls = seen
    return t


def expected_logp(batch):
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    video = {"second_per_grid_ts": batch["second_per_grid_ts"]} if "second_per_grid_ts" in batch else None
    feats = batch.get("pixel_values_videos")
    return fake_logps(ids, mask, 5, feats, video), fake_entropy(ids, 5)


def core_loss(t, batch, logp, **kw):
    args = dict(token_mask=batch.get("ktr_token_mask"), ref_logp=batch["ref_per_token_logps"] if t.beta else None,
                beta=t.beta, eps_low=t.epsilon_low, eps_high=t.epsilon_high, aggregation=t.args.aggregation,
                denominator=t.args.ktr_denominator, mask_kl=t.args.ktr_mask_kl,
                token_weights=batch.get("ktr_token_weights"), max_completion_length=5,
                is_ratio=batch.get("importance_sampling_ratio"))  # fmt: skip
    args.update(kw)
    valid = (
        batch["completion_mask"].bool()
        if "tool_mask" not in batch
        else (batch["completion_mask"] * batch["tool_mask"]).bool()
    )
    return core.policy_loss(logp, batch.get("old_per_token_logps"), batch["advantages"], valid, **args)


def test_loss_of_a_video_micro_batch(tmp_path, monkeypatch):
    # ktr: the mask travels with the rows; train mode: the loss is divided by the accumulation steps (3 here)
    t = loss_host(
        tmp_path, monkeypatch, ktr_mask_kl=True, ktr_denominator="selected", epsilon=0.1, epsilon_high=0.3
    )
    t.current_gradient_accumulation_steps = 3
    batch = micro_batch()
    batch["ktr_token_mask"] = torch.tensor(
        [[1, 0, 1, 0, 1], [0, 1, 1, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 1, 1]]
    ).bool()
    batch["importance_sampling_ratio"] = torch.tensor([[0.9], [1.1], [1.0], [0.8]])
    loss = t._compute_loss(t.model, batch)
    logp, entropy = expected_logp(batch)
    expected, metrics = core_loss(t, batch, logp)
    assert t.epsilon_low == 0.1 and t.epsilon_high == 0.3 and t.beta == 0.04
    assert loss.item() == pytest.approx(expected.item() / 3, rel=1e-6) and expected.item() != 0
    logged = t._metrics["train"]
    assert logged["kl"] == [pytest.approx(metrics["loss/kl"])] and metrics["loss/kl"] > 0
    assert logged["entropy"] == [pytest.approx(entropy[VALID].mean().item())]
    assert t.vision_calls == [(("inner", t.model), batch["video_grid_thw"])]
    (call,) = t.forwards.named("token_logps")
    assert call["compute_entropy"] is True and call["batch_size"] is None


def test_eval_loss_is_not_divided_and_logs_under_eval(tmp_path, monkeypatch):
    t = loss_host(tmp_path, monkeypatch)
    t.current_gradient_accumulation_steps = 3
    t.model.training = False
    batch = micro_batch()
    logp, _ = expected_logp(batch)
    assert t._compute_loss(t.model, batch).item() == pytest.approx(
        core_loss(t, batch, logp)[0].item(), rel=1e-6
    )
    assert "entropy" in t._metrics["eval"] and not t._metrics["train"]


def test_on_policy_without_old_logps_and_beta_0_ignores_the_reference(tmp_path, monkeypatch):
    # old log-probs missing: the ratio is 1 (logp.detach()); beta 0: a NaN reference must not reach the loss
    t = loss_host(tmp_path, monkeypatch, beta=0.0)
    batch = micro_batch()
    del batch["old_per_token_logps"]
    batch["ref_per_token_logps"] = torch.full((4, 5), float("nan"))
    batch["tool_mask"] = torch.tensor([[0, 1, 1, 1, 1]] * 4)  # the first token of every row came from a tool
    loss = t._compute_loss(t.model, batch)
    logp, entropy = expected_logp(batch)
    expected, _ = core_loss(t, batch, logp, ref_logp=None)
    assert torch.isfinite(loss) and loss.item() == pytest.approx(expected.item(), rel=1e-6)
    valid = (
        VALID & batch["tool_mask"].bool()
    )  # 13 tokens: entropy 0.5 + 0.1 * 68 / 13 (17 without the tool mask)
    assert t._metrics["train"]["entropy"] == [pytest.approx(0.5 + 0.1 * 68 / 13)]
    assert entropy[valid].mean().item() == pytest.approx(0.5 + 0.1 * 68 / 13)


def test_soft_weights_travel_with_the_rows(tmp_path, monkeypatch):
    t = loss_host(tmp_path, monkeypatch, ktr_weighting="linear")
    batch = micro_batch()
    batch["ktr_token_weights"] = torch.tensor([[0.0, 2.0, 1.0, 1.0, 1.0]] * 4)
    logp, _ = expected_logp(batch)
    expected, _ = core_loss(t, batch, logp)
    assert t._compute_loss(t.model, batch).item() == pytest.approx(expected.item(), rel=1e-6)
    assert expected.item() != pytest.approx(core_loss(t, batch, logp, token_weights=None)[0].item())


@pytest.mark.parametrize("training", [True, False])
def test_token_mean_global(tmp_path, monkeypatch, training):
    # dapo: token-mean of the micro-batch * its valid tokens / (num_items_in_batch / processes), in training also
    # * accumulation / steps_per_generation: 17 valid tokens, num_items 40, 2 processes, accumulation 4,
    # steps_per_generation 8 -> train: loss * 17 / (20 * 4 / 8) = loss * 1.7; eval: loss * 17 / 20
    t = loss_host(
        tmp_path, monkeypatch, loss_type="dapo", gradient_accumulation_steps=4, steps_per_generation=8
    )
    t.accelerator.num_processes = 2
    t.current_gradient_accumulation_steps = 4
    t.model.training = training
    batch = micro_batch()
    logp, _ = expected_logp(batch)
    expected, _ = core_loss(t, batch, logp, aggregation="token-mean")
    factor = 1.7 if training else 17 / 20
    assert t._compute_loss(t.model, batch).item() == pytest.approx(expected.item() * factor, rel=1e-6)


def test_token_mean_global_of_an_empty_batch(tmp_path, monkeypatch):
    # no valid token anywhere (num_items 0): the normaliser is clamped to 1, the loss is 0 (not NaN)
    t = loss_host(tmp_path, monkeypatch, loss_type="dapo")
    batch = micro_batch()
    batch["completion_mask"] = torch.zeros(4, 5, dtype=torch.long)
    batch["num_items_in_batch"] = torch.tensor(0.0)
    assert t._compute_loss(t.model, batch).item() == 0.0


def test_image_micro_batches_go_through_trl(tmp_path, monkeypatch):
    t = loss_host(tmp_path, monkeypatch)
    seen = {}

    def trl_logps(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False,
                  compute_aux_loss=False, **image_kwargs):  # fmt: skip
        seen.update(model=model, input_ids=input_ids, logits_to_keep=logits_to_keep, batch_size=batch_size,
                    compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, image_kwargs=image_kwargs)  # fmt: skip
        return (
            fake_logps(input_ids, attention_mask, logits_to_keep),
            fake_entropy(input_ids, logits_to_keep),
            None,
        )

    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies", trl_logps)
    batch = micro_batch(video=False)
    batch["pixel_values"], batch["image_grid_thw"] = torch.ones(4, 2), torch.tensor([[1, 1, 4]])
    loss = t._compute_loss(t.model, batch)
    assert seen["model"] is t.model and seen["compute_entropy"] is True and seen["logits_to_keep"] == 5
    assert (
        set(seen["image_kwargs"]) == set(IMAGE_KEYS)
        and seen["image_kwargs"]["pixel_values"] is batch["pixel_values"]
    )
    assert seen["image_kwargs"]["num_images"] is None and not t.vision_calls
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    assert torch.equal(seen["input_ids"], ids)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    expected, _ = core_loss(t, batch, fake_logps(ids, mask, 5))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_rollout_passes_use_the_rollout_video(tmp_path, monkeypatch):
    # inside TRL's rollout (old / ref log-probs) the batch has no video fields: the rollout's video is used when the
    # rows match; otherwise TRL's own forward
    t = loss_host(tmp_path, monkeypatch)
    batch = micro_batch()
    t._rollout_video = {k: batch[k] for k in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")}
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    logp, entropy, aux = t._get_per_token_logps_and_entropies(t.model, ids, mask, 5, batch_size=2)
    assert aux is None and entropy is None
    assert torch.equal(logp, fake_logps(ids, mask, 5, None, t._rollout_video))
    (call,) = t.forwards.named("token_logps")
    assert call["video"] is t._rollout_video and call["batch_size"] == 2 and call["features"] is None
    called = []
    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies",
                        lambda self, *a, **kw: called.append((a, kw)) or ("trl",))  # fmt: skip
    assert t._get_per_token_logps_and_entropies(t.model, ids[:2], mask[:2], 5, compute_aux_loss=True) == (
        "trl",
    )
    assert called[0][1]["compute_aux_loss"] is True and called[0][1]["batch_size"] is None
    t._get_per_token_logps_and_entropies(t.model, ids[:2], mask[:2], 5, batch_size=3, pixel_values="px")
    assert called[1][1]["compute_aux_loss"] is False and called[1][1]["batch_size"] == 3
    assert called[1][1]["pixel_values"] == "px"
    assert called[0][1]["compute_entropy"] is False and torch.equal(called[0][0][1], ids[:2])


def test_full_logits_at_the_sampling_temperature(tmp_path, monkeypatch):
    t = loss_host(tmp_path, monkeypatch, temperature=0.6)
    batch = micro_batch()
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    video = {
        "pixel_values_videos": batch["pixel_values_videos"],
        "second_per_grid_ts": batch["second_per_grid_ts"],
    }
    feats = batch["pixel_values_videos"]
    logits = t._full_logits(t.model, ids, mask, 5, video, feats, pixel_values="px")
    assert torch.equal(logits, fake_logits(ids, mask, 5, feats, video, temperature=0.6))
    (call,) = t.forwards.named("full_logits")
    assert call["image_kwargs"] == {"pixel_values": "px"} and call["temperature"] == 0.6


def test_tw_grpo_weights_with_gradient_from_the_policy_forward(tmp_path, monkeypatch):
    # tw_weight_grad: log-probs, entropies and weights from ONE full-logits forward with gradient; the weights of
    # each row from its group (group_ids), whatever the row order
    t = loss_host(tmp_path, monkeypatch, method="tw_grpo", tw_alpha=2.5)
    batch = micro_batch()
    order = torch.tensor([3, 0, 2, 1])
    batch = {k: ([v[i] for i in order] if isinstance(v, list) else v[order] if torch.is_tensor(v) and v.dim() else v)
             for k, v in batch.items()}  # fmt: skip
    loss = t._compute_loss(t.model, batch)
    (call,) = t.forwards.named("full_logits")
    assert call["grad"] is True and call["temperature"] == 0.7 and call["image_kwargs"] == {}
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    video = {"second_per_grid_ts": batch["second_per_grid_ts"]}
    logits = fake_logits(ids, mask, 5, batch["pixel_values_videos"], video, temperature=0.7)
    valid = batch["completion_mask"].bool()
    weights = core.tw_token_weights_by_group(logits, valid, batch["group_ids"], 2, alpha=2.5)
    logp = core.selective_log_softmax(logits, batch["completion_ids"])
    expected, _ = core_loss(t, batch, logp, token_weights=weights, aggregation="token-mean")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert t._metrics["train"]["tw/weight_mean"] == [pytest.approx(weights[valid].mean().item())]
    entropy = core.entropy_from_logits(logits)
    assert t._metrics["train"]["entropy"] == [pytest.approx(entropy[valid].mean().item(), rel=1e-5)]
    assert not torch.allclose(weights[valid], torch.ones(1))  # the weights vary


def test_tw_grpo_with_no_valid_token_logs_no_weight(tmp_path, monkeypatch):
    t = loss_host(tmp_path, monkeypatch, method="tw_grpo")
    batch = micro_batch()
    batch["completion_mask"] = torch.zeros(4, 5, dtype=torch.long)
    t._compute_loss(t.model, batch)
    assert "tw/weight_mean" not in t._metrics["train"]


def ratios_batch(t, batch, ratios=(0.7, 0.85, 1.0, 1.25, 1.4)):
    """old log-probs such that the ratio pi / pi_old of position k is ratios[k] in every row."""
    logp, _ = expected_logp(batch)
    batch["old_per_token_logps"] = logp - torch.log(torch.tensor(ratios))
    return logp


@pytest.mark.parametrize(
    "fields",
    [
        {
            "epsilon": 0.1,
            "epsilon_high": 0.3,
        },  # ratios 0.85 (A < 0) and 1.25 (A > 0) are clipped only by these
        {"beta": 0.1},
        {"beta": 1.0},
        {"loss_type": "dr_grpo"},  # divides by rows * max_completion_length (5)
    ],
)
def test_loss_settings_reach_the_core_loss(tmp_path, monkeypatch, fields):
    t = loss_host(tmp_path, monkeypatch, **fields)
    batch = micro_batch()
    logp = ratios_batch(t, batch)
    expected, _ = core_loss(t, batch, logp)
    assert t._compute_loss(t.model, batch).item() == pytest.approx(expected.item(), rel=1e-6)
    default, _ = core_loss(t, batch, logp, beta=0.04, eps_low=0.2, eps_high=0.2, max_completion_length=None,
                           aggregation="seq-mean-token-mean")  # fmt: skip
    assert expected.item() != pytest.approx(default.item(), rel=1e-6)  # the check can fail


def test_token_mean_global_of_a_single_token(tmp_path, monkeypatch):
    # one valid token in the micro-batch and in the whole batch (num_items 1): loss * 1 / (1 * 1 / 1) = the token's
    t = loss_host(tmp_path, monkeypatch, loss_type="dapo")
    batch = micro_batch()
    batch["completion_mask"] = torch.zeros(4, 5, dtype=torch.long)
    batch["completion_mask"][0, 1] = 1
    batch["num_items_in_batch"] = torch.tensor(1.0)
    logp = ratios_batch(t, batch)
    expected, _ = core_loss(t, batch, logp, aggregation="token-mean")
    assert expected.item() != 0
    assert t._compute_loss(t.model, batch).item() == pytest.approx(expected.item(), rel=1e-6)


def test_tw_grpo_weight_metric_in_eval(tmp_path, monkeypatch):
    t = loss_host(tmp_path, monkeypatch, method="tw_grpo")
    t.model.training = False
    t._compute_loss(t.model, micro_batch())
    assert "tw/weight_mean" in t._metrics["eval"] and not t._metrics["train"]
