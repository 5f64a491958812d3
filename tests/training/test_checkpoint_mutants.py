"""Resume, pinned where mutation testing (docs/testing.md, module training/setup) found nothing checking it, on fake
checkpoint folders and a fake trainer (no training): which checkpoint counts as complete, which one is picked,
where the weights are read from, the epoch orders of the sampler, the state saved beside the RNG state, the
selection log cut back to the checkpoint, and the demo's stage folders. The end-to-end resume runs are in
test_resume.py."""

from __future__ import annotations

import json
import logging
import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file
from trl.trainer.utils import RepeatSampler

from videoktr.errors import UserError
from videoktr.training import checkpoint as C


def message(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as err:
        fn(*args, **kwargs)
    return str(err.value)


def folder(path, *names, state: str | None = "{}"):
    """A checkpoint folder holding empty files ``names`` and, unless ``state`` is None, trainer_state.json."""
    path.mkdir(parents=True)
    for name in names:
        (path / name).write_bytes(b"")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


FULL = ("model.safetensors", "optimizer.pt", "videoktr_state.pt")


# -------------------------------------------------------------------------------------- complete or not
def test_what_a_complete_checkpoint_needs(tmp_path):
    assert C.checkpoint_problem(tmp_path / "nothing") == "not a directory"
    assert C.checkpoint_problem(folder(tmp_path / "empty", state=None)) == (
        "missing trainer_state.json, model weights, optimizer.pt, videoktr_state.pt"
    )
    assert C.checkpoint_problem(folder(tmp_path / "full", *FULL)) is None
    # without the optimizer (save_only_model) only the state and the weights are needed
    assert (
        C.checkpoint_problem(folder(tmp_path / "weights", "model.safetensors"), needs_optimizer=False) is None
    )
    assert C.checkpoint_problem(tmp_path / "weights") == "missing optimizer.pt, videoktr_state.pt"
    assert C.checkpoint_problem(folder(tmp_path / "no_state", *FULL[:2])) == "missing videoktr_state.pt"
    assert C.checkpoint_problem(folder(tmp_path / "no_opt", FULL[0], FULL[2])) == "missing optimizer.pt"
    assert C.checkpoint_problem(folder(tmp_path / "no_w", *FULL[1:])) == "missing model weights"
    # a process's own state file (several processes) counts
    assert C.checkpoint_problem(folder(tmp_path / "ranked", *FULL[:2], "videoktr_state_1.pt")) is None


@pytest.mark.parametrize(
    "weights",
    [
        "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
        "adapter_model.safetensors", "adapter_model.bin",
    ],
)  # fmt: skip
def test_every_weight_layout_counts(tmp_path, weights):
    assert C.checkpoint_problem(folder(tmp_path / "c", weights, "optimizer.pt", "videoktr_state.pt")) is None


def test_deepspeed_global_step_folder_holds_weights_and_optimizer(tmp_path):
    path = folder(tmp_path / "ds", "videoktr_state.pt")
    (path / "global_step4").mkdir()
    assert C.checkpoint_problem(path) is None
    assert C.checkpoint_problem(folder(tmp_path / "ds2", "model.safetensors", "videoktr_state.pt")) == (
        "missing optimizer.pt"
    )


def test_unreadable_trainer_state(tmp_path):
    problem = C.checkpoint_problem(folder(tmp_path / "cut", *FULL, state='{"global_st'))
    assert problem.startswith("trainer_state.json unreadable (") and problem.endswith(")")
    assert "Unterminated string" in problem


# ---------------------------------------------------------------------------------------- picking one
def test_newest_complete_checkpoint_by_number(tmp_path, caplog):
    for n in (3, 9, 10):
        folder(tmp_path / f"checkpoint-{n}", *FULL)
    folder(tmp_path / "checkpoint-11", *FULL, state=None)  # killed while saving
    folder(tmp_path / "checkpoint-12", "model.safetensors", state=None)  # killed earlier
    folder(tmp_path / "checkpoint-99-old", *FULL)  # not checkpoint-N: ignored
    folder(tmp_path / "my-checkpoint-50", *FULL)
    (tmp_path / "checkpoint-7").write_text("a file")
    with caplog.at_level(logging.WARNING, logger="videoktr.training.checkpoint"):
        assert C.resolve_resume(True, tmp_path) == str(tmp_path / "checkpoint-10")
    assert [r.getMessage() for r in caplog.records] == [
        f"skipping incomplete checkpoint {tmp_path / 'checkpoint-12'} (missing trainer_state.json, optimizer.pt, "
        f"videoktr_state.pt); resuming from {tmp_path / 'checkpoint-10'}",
        f"skipping incomplete checkpoint {tmp_path / 'checkpoint-11'} (missing trainer_state.json); resuming from "
        f"{tmp_path / 'checkpoint-10'}",
    ]


def test_without_the_optimizer_a_weights_only_checkpoint_is_complete(tmp_path):
    folder(tmp_path / "checkpoint-1", *FULL)
    folder(tmp_path / "checkpoint-2", "model.safetensors")
    assert C.resolve_resume(True, tmp_path, needs_optimizer=False) == str(tmp_path / "checkpoint-2")
    assert C.resolve_resume(True, tmp_path) == str(tmp_path / "checkpoint-1")


def test_resume_values(tmp_path):
    assert C.resolve_resume(None, tmp_path) is None and C.resolve_resume(False, tmp_path) is None
    path = folder(tmp_path / "checkpoint-4", *FULL)
    assert C.resolve_resume(path, tmp_path / "elsewhere") == str(path)  # a Path is accepted
    assert C.resolve_resume(str(path), tmp_path) == str(path)
    assert message(C.resolve_resume, 3, tmp_path) == (
        "resume_from_checkpoint=3: use true, null or a checkpoint directory"
    )
    folder(tmp_path / "half", "model.safetensors")
    assert message(C.resolve_resume, str(tmp_path / "half"), tmp_path) == (
        f"resume_from_checkpoint={tmp_path / 'half'}: not a complete checkpoint (missing optimizer.pt, "
        "videoktr_state.pt); pass a complete checkpoint-N directory, or true for the newest complete one"
    )
    assert C.resolve_resume(str(tmp_path / "half"), tmp_path, needs_optimizer=False) == str(tmp_path / "half")


def test_nothing_to_resume_lists_what_was_found(tmp_path):
    folder(tmp_path / "checkpoint-1", "model.safetensors", state=None)
    assert message(C.resolve_resume, True, tmp_path) == (
        f"resume_from_checkpoint=true: no complete checkpoint-N in {tmp_path}\n"
        f"  {tmp_path / 'checkpoint-1'}: missing trainer_state.json, optimizer.pt, videoktr_state.pt\n"
        "start a fresh run with resume_from_checkpoint=null (or another output_dir), or pass a checkpoint path"
    )
    assert message(C.resolve_resume, True, tmp_path / "none") == (
        f"resume_from_checkpoint=true: no complete checkpoint-N in {tmp_path / 'none'}\n"
        "start a fresh run with resume_from_checkpoint=null (or another output_dir), or pass a checkpoint path"
    )


# ------------------------------------------------------------------------------------------------ weights
def test_state_dict_from_each_layout(tmp_path):
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0])
    assert C._read_state_dict(folder(tmp_path / "none", "optimizer.pt")) is None
    single = folder(tmp_path / "single")
    save_file({"a": a, "b": b}, str(single / "model.safetensors"))
    torch.save({"a": -a}, single / "pytorch_model.bin")  # safetensors is read first
    assert {k: v.tolist() for k, v in C._read_state_dict(single).items()} == {"a": [1.0, 2.0], "b": [3.0]}
    binary = folder(tmp_path / "bin")
    torch.save({"a": a}, binary / "pytorch_model.bin")
    assert C._read_state_dict(binary)["a"].tolist() == [1.0, 2.0]
    for name, ext, save in (
        ("model.safetensors.index.json", "safetensors", lambda t, p: save_file(t, str(p))),
        ("pytorch_model.bin.index.json", "bin", lambda t, p: torch.save(t, p)),
    ):
        sharded = folder(tmp_path / ext / "sharded")
        save({"a": a}, sharded / f"s1.{ext}")
        save({"b": b}, sharded / f"s2.{ext}")
        (sharded / name).write_text(
            json.dumps({"weight_map": {"a": f"s1.{ext}", "b": f"s2.{ext}", "c": f"s1.{ext}"}})
        )
        save_file({"a": -a}, str(sharded / "model.safetensors"))  # the index is read first
        got = C._read_state_dict(sharded)
        assert {k: v.tolist() for k, v in got.items()} == {"a": [1.0, 2.0], "b": [3.0]}, name


def test_weight_converters_are_refused(monkeypatch):
    from transformers.core_model_loading import WeightConverter

    class Converter(WeightConverter):
        def __init__(self):
            pass

        def __repr__(self):
            return "Converter()"

    class Model:
        pass

    import importlib

    mapping = importlib.import_module("transformers.conversion_mapping")
    monkeypatch.setattr(mapping, "get_model_conversion_mapping", lambda m: [Converter()])
    with pytest.raises(NotImplementedError) as err:
        C.to_model_keys(Model(), {})
    assert str(err.value) == "Model: resume does not apply weight converters [Converter()]"


def test_a_checkpoint_missing_one_tensor_is_refused(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    from videoktr.models.tiny import load_model_and_processor

    model, _ = load_model_and_processor(tiny_model_dir)
    model.save_pretrained(tmp_path / "ck")
    saved = load_file(str(tmp_path / "ck" / "model.safetensors"))
    # the LM head is tied to the embeddings: saved once, and loaded through its first name
    assert (
        "lm_head.weight" not in saved
        and model.lm_head.weight is model.model.language_model.embed_tokens.weight
    )
    norm = "model.norm.weight"
    save_file({k: v for k, v in saved.items() if k != norm}, str(tmp_path / "ck" / "model.safetensors"))
    assert message(C.load_model_weights, model, tmp_path / "ck") == (
        f"checkpoint {tmp_path / 'ck'} does not match the model: 1 missing keys (e.g. "
        "['model.language_model.norm.weight']), 0 unexpected keys (e.g. []); resume with the model it was "
        "trained from"
    )
    (tmp_path / "adapter").mkdir()
    assert C.load_model_weights(model, tmp_path / "adapter") is False  # no full-model weights: PEFT loads it


# -------------------------------------------------------------------------------------------- data order
def _draws(seed: int, n: int, count: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(n, generator=g).tolist() for _ in range(count)]


def test_epoch_e_order_is_the_seeds_e_th_draw():
    sampler = C.EpochRepeatSampler(list(range(5)), mini_repeat_count=2, batch_size=5, seed=3)
    draws = _draws(3, 5, 3)
    for epoch in (2, 0, 1, 2):  # in any order, as a resumed run sets them
        sampler.set_epoch(epoch)
        assert list(sampler) == [i for i in draws[epoch] for _ in range(2)]


def test_set_epoch_leaves_unshuffled_and_unseeded_samplers_alone():
    plain = C.EpochRepeatSampler(list(range(3)), mini_repeat_count=1, batch_size=3, shuffle=False, seed=0)
    plain.set_epoch(2)
    assert list(plain) == [0, 1, 2]
    unseeded = C.EpochRepeatSampler(list(range(6)), mini_repeat_count=1, batch_size=6, seed=None)
    unseeded.generator.manual_seed(11)
    unseeded.set_epoch(1)
    assert list(unseeded) == _draws(11, 6, 1)[0]  # not reseeded: the generator goes on from where it was


def test_to_device_keeps_the_containers():
    t = torch.ones(2)
    out = C._to_device({"a": [t, (t, 3)], "b": "x", "c": None}, "meta")
    assert out["a"][0].device.type == "meta" and type(out["a"]) is list and type(out["a"][1]) is tuple
    assert (
        out["a"][1][0].device.type == "meta" and out["a"][1][1] == 3 and (out["b"], out["c"]) == ("x", None)
    )


# ------------------------------------------------------------------------------------------- the trainer
class Engine:
    """What ResumeMixin calls on the Trainer below it: records the calls."""

    def __init__(self, tmp_path, world_size=1, process_index=0, save_only_model=False):
        self.calls = []
        self.args = SimpleNamespace(
            world_size=world_size, process_index=process_index, output_dir=str(tmp_path),
            save_only_model=save_only_model,
        )  # fmt: skip
        self.accelerator = SimpleNamespace(
            unwrap_model=lambda m: ("unwrapped", m), device="meta", is_main_process=True
        )
        self.is_deepspeed_enabled = self.is_fsdp_enabled = False
        self.model = "model"
        self.state = SimpleNamespace(global_step=0)
        self._step, self._buffered_inputs = 0, None
        self._ktr_generator = torch.Generator().manual_seed(0)

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        self.calls.append(("train", resume_from_checkpoint, args, kwargs))
        return "trained"

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        self.calls.append(("load", resume_from_checkpoint, model))

    def _get_train_sampler(self, dataset=None):
        return self.sampler

    def _save_rng_state(self, output_dir):
        self.calls.append(("save_rng", output_dir))

    def _load_rng_state(self, checkpoint):
        self.calls.append(("load_rng", checkpoint))


class Trainer(C.ResumeMixin, Engine):
    pass


def test_state_file_per_process(tmp_path):
    assert Trainer(tmp_path)._state_file("d") == C.Path("d") / "videoktr_state.pt"
    assert (
        Trainer(tmp_path, world_size=2, process_index=1)._state_file("d")
        == C.Path("d") / "videoktr_state_1.pt"
    )


def test_train_resolves_the_checkpoint_first(tmp_path):
    folder(tmp_path / "checkpoint-1", *FULL)
    folder(tmp_path / "checkpoint-2", "model.safetensors")  # complete only without the optimizer
    trainer = Trainer(tmp_path)
    assert trainer.train(True, 5, trial=None) == "trained"
    assert trainer.calls == [("train", str(tmp_path / "checkpoint-1"), (5,), {"trial": None})]
    only_model = Trainer(tmp_path, save_only_model=True)
    only_model.train(resume_from_checkpoint=True)
    assert only_model.calls == [("train", str(tmp_path / "checkpoint-2"), (), {})]


def test_weights_are_loaded_with_key_renaming_unless_an_engine_loads_them(tmp_path, monkeypatch):
    loaded = []
    full = True
    monkeypatch.setattr(C, "load_model_weights", lambda model, ck: loaded.append((model, ck)) or full)
    trainer = Trainer(tmp_path)
    trainer._load_from_checkpoint("ck")
    trainer._load_from_checkpoint("ck", model="other")
    assert loaded == [(("unwrapped", "model"), "ck"), (("unwrapped", "other"), "ck")] and trainer.calls == []
    full = False  # an adapter checkpoint: PEFT's loading through the Trainer
    trainer._load_from_checkpoint("ck2", model="m")
    assert trainer.calls == [("load", "ck2", "m")]
    for engine in ("is_deepspeed_enabled", "is_fsdp_enabled"):
        other = Trainer(tmp_path)
        setattr(other, engine, True)
        loaded.clear()
        other._load_from_checkpoint("ck3")
        assert other.calls == [("load", "ck3", None)] and loaded == [], engine


def test_only_trls_own_sampler_is_replaced(tmp_path):
    trainer = Trainer(tmp_path)
    trainer.sampler = RepeatSampler(list(range(4)), mini_repeat_count=1, seed=0)
    assert type(trainer._get_train_sampler()) is C.EpochRepeatSampler

    class Custom(RepeatSampler):
        pass

    trainer.sampler = Custom(list(range(4)), mini_repeat_count=1, seed=0)
    assert type(trainer._get_train_sampler()) is Custom


def test_state_saved_beside_the_rng_state_and_restored(tmp_path):
    source = Trainer(tmp_path)
    source._step, source._buffered_inputs = 7, [{"ids": torch.arange(3)}]
    source._ktr_generator.manual_seed(5)
    torch.rand(2, generator=source._ktr_generator)
    (tmp_path / "ck").mkdir()  # the Trainer makes the folder before
    source._save_rng_state(str(tmp_path / "ck"))
    assert source.calls == [("save_rng", str(tmp_path / "ck"))]
    assert (tmp_path / "ck" / "videoktr_state.pt").is_file()
    expected_next = torch.rand(2, generator=source._ktr_generator)

    resumed = Trainer(tmp_path)
    resumed._load_rng_state(str(tmp_path / "ck"))
    assert resumed.calls == [("load_rng", str(tmp_path / "ck"))]
    assert resumed._step == 7 and resumed._buffered_inputs[0]["ids"].device.type == "meta"
    assert torch.equal(torch.rand(2, generator=resumed._ktr_generator), expected_next)

    fresh = Trainer(tmp_path)
    fresh._load_rng_state(None)
    assert fresh.calls == [("load_rng", None)] and fresh._step == 0


@pytest.fixture
def ck_dir(tmp_path):
    (tmp_path / "ck").mkdir()
    return tmp_path / "ck"


def test_a_checkpoint_without_our_state_is_refused(tmp_path, ck_dir):
    trainer = Trainer(tmp_path, world_size=2, process_index=1)
    assert message(trainer._load_rng_state, str(ck_dir)) == (
        f"{ck_dir} has no videoktr_state_1.pt (saved by another trainer or world size); the run cannot resume "
        "exactly from it: start a fresh run or resume with the same number of processes"
    )


def test_selection_log_is_cut_back_to_the_checkpoint(tmp_path, caplog):
    log = tmp_path / "selection.jsonl"
    lines = [
        '{"step": 1, "r": 0}\n',
        '{"r": 9}\n',
        "\n",
        '{"step": 2}\n',
        '{"step": 3}\n',
        '{"step": 1, "r": 1}\n',
    ]
    log.write_text("".join(lines) + '{"step": 3, "cut')
    trainer = Trainer(tmp_path)
    trainer.state.global_step = 2
    with caplog.at_level(logging.WARNING, logger="videoktr.training.checkpoint"):
        trainer._truncate_selection_log()
    # steps before 2 are kept (a line without a step too); the step-2/3 lines and the cut-off line are dropped
    assert log.read_text() == lines[0] + lines[1] + lines[5]
    assert [r.getMessage() for r in caplog.records] == [f"{log}: dropping a cut-off line"]


def test_selection_log_left_alone(tmp_path):
    log = tmp_path / "selection.jsonl"
    trainer = Trainer(tmp_path)
    trainer.state.global_step = 1
    trainer._truncate_selection_log()  # no log: nothing to do
    assert not log.exists()
    log.write_text('{"step": 0}\n{"step": 1}\n')
    trainer.accelerator.is_main_process = False  # another process: the main one owns the file
    trainer._truncate_selection_log()
    assert log.read_text() == '{"step": 0}\n{"step": 1}\n'
    log.write_text('{"step": 0}\n')
    trainer.accelerator.is_main_process = True
    log.chmod(0o444)  # nothing to drop: the file is not written again
    try:
        trainer._truncate_selection_log()
    finally:
        log.chmod(0o644)
    assert log.read_text() == '{"step": 0}\n'


# ----------------------------------------------------------------------------------- demo stage folders
SETTINGS = {"lr": 0.1, "frames": (4, 8)}


def test_a_fresh_stage_folder(tmp_path):
    run = tmp_path / "a" / "run"
    assert C.prepare_run_dir(run, SETTINGS) == (None, None)
    assert (run / "run_settings.json").read_text() == (
        '{\n "settings": {\n  "lr": 0.1,\n  "frames": [\n   4,\n   8\n  ]\n }\n}'
    )


def test_a_finished_stage_is_skipped_and_another_settings_run_cleared(tmp_path):
    run = tmp_path / "run"
    C.prepare_run_dir(run, SETTINGS)
    C.finish_run_dir(run, SETTINGS, global_step=3, stopped_early=False)
    record = json.loads((run / "run_finished.json").read_text())
    assert record == {"settings": {"lr": 0.1, "frames": [4, 8]}, "global_step": 3, "stopped_early": False}
    assert (run / "run_finished.json").read_text().startswith('{\n "settings": {\n  "lr"')  # indent=1
    assert C.prepare_run_dir(run, SETTINGS) == (record, None)
    folder(run / "checkpoint-3", *FULL)
    (run / "selection.jsonl").write_text("{}\n")
    (run / "keep.txt").write_text("x")
    assert C.prepare_run_dir(run, {**SETTINGS, "lr": 0.2}) == (None, None)
    assert sorted(p.name for p in run.iterdir()) == ["keep.txt", "run_settings.json"]
    assert json.loads((run / "run_settings.json").read_text()) == {"settings": {"lr": 0.2, "frames": [4, 8]}}


def test_an_interrupted_stage_resumes_only_after_a_complete_checkpoint(tmp_path):
    run = tmp_path / "run"
    C.prepare_run_dir(run, SETTINGS)
    folder(run / "checkpoint-1", *FULL, state=None)  # killed before its first complete checkpoint
    assert C.prepare_run_dir(run, SETTINGS) == (None, None)
    assert not (run / "checkpoint-1").exists()
    folder(run / "checkpoint-2", *FULL)
    assert C.prepare_run_dir(run, SETTINGS) == (None, True)
    assert (run / "checkpoint-2").is_dir()
    (run / "run_settings.json").write_text("{not json")  # unreadable: a fresh start
    assert C.prepare_run_dir(run, SETTINGS) == (None, None) and not (run / "checkpoint-2").exists()


def test_finished_run_reads_what_the_demo_needs(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run)
    (run / "log_history.json").write_text('[{"step": 1, "loss": 0.5}]')
    done = C.finished_run(run, {"global_step": 4})
    assert done.state.global_step == 4 and done.state.log_history == [{"step": 1, "loss": 0.5}]
    assert done.args.output_dir == str(run) and done.processing_class.tokenizer is not None


def test_every_incomplete_checkpoint_is_listed_on_its_line(tmp_path):
    folder(tmp_path / "checkpoint-1", "model.safetensors", state=None)
    folder(tmp_path / "checkpoint-2", *FULL[1:])
    assert message(C.resolve_resume, True, tmp_path) == (
        f"resume_from_checkpoint=true: no complete checkpoint-N in {tmp_path}\n"
        f"  {tmp_path / 'checkpoint-2'}: missing model weights\n"
        f"  {tmp_path / 'checkpoint-1'}: missing trainer_state.json, optimizer.pt, videoktr_state.pt\n"
        "start a fresh run with resume_from_checkpoint=null (or another output_dir), or pass a checkpoint path"
    )


class Payload:
    """Not a tensor, container or number: what ``weights_only=True`` refuses to unpickle."""


def test_saved_weights_are_never_unpickled_as_code(tmp_path):
    import pickle

    for name in ("pytorch_model.bin", "pytorch_model.bin.index.json"):
        path = folder(tmp_path / name)
        torch.save({"a": torch.ones(1), "b": Payload()}, path / "w.bin")
        if name.endswith(".json"):
            (path / name).write_text(json.dumps({"weight_map": {"a": "w.bin"}}))
        else:
            (path / "w.bin").rename(path / name)
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            C._read_state_dict(path)


def test_base_model_keys_get_the_models_prefix(tiny_model_dir):
    # a checkpoint of the inner model (keys visual.*, language_model.*) loads into the full model: the base
    # model prefix "model." is added where the prefixed key is the model's
    from videoktr.models.tiny import load_model_and_processor

    model, _ = load_model_and_processor(tiny_model_dir)
    inner = model.model.state_dict()
    assert any(k.startswith("language_model.") for k in inner)
    assert list(C.to_model_keys(model, dict(inner))) == [f"model.{k}" for k in inner]


class Module(torch.nn.Module):
    """Tied weights and two zero-element tensors: the cases of the required-key rule."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(2, 2, bias=False)
        self.b = torch.nn.Linear(2, 2, bias=False)
        self.b.weight = self.a.weight  # tied: loaded through its first name, "a.weight"
        self.e1 = torch.nn.Parameter(torch.empty(0))
        self.e2 = torch.nn.Parameter(torch.empty(0))
        self.c = torch.nn.Linear(2, 1)


def test_required_keys_of_tied_and_empty_tensors(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "to_model_keys", lambda model, state: dict(state))  # no renaming for this module
    model = Module()
    full = {"a.weight": torch.full((2, 2), 3.0), "e1": torch.empty(0), "e2": torch.empty(0)}
    full |= {"c.weight": torch.ones(1, 2), "c.bias": torch.ones(1)}
    save_file(full, str(folder(tmp_path / "ok") / "model.safetensors"))
    assert C.load_model_weights(model, tmp_path / "ok")
    assert model.b.weight.tolist() == [[3.0, 3.0], [3.0, 3.0]]  # through the tie
    # each empty tensor is its own key (they share no storage): e2 missing is refused
    save_file(
        {k: v for k, v in full.items() if k != "e2"}, str(folder(tmp_path / "no_e2") / "model.safetensors")
    )
    assert message(C.load_model_weights, model, tmp_path / "no_e2") == (
        f"checkpoint {tmp_path / 'no_e2'} does not match the model: 1 missing keys (e.g. ['e2']), 0 unexpected "
        "keys (e.g. []); resume with the model it was trained from"
    )
    # 5 required keys missing, 4 unexpected: three of each are named
    other = {f"x{i}": torch.zeros(1) for i in range(4)}
    save_file(other, str(folder(tmp_path / "other") / "model.safetensors"))
    assert message(C.load_model_weights, model, tmp_path / "other") == (
        f"checkpoint {tmp_path / 'other'} does not match the model: 5 missing keys (e.g. ['a.weight', 'c.bias', "
        "'c.weight']), 4 unexpected keys (e.g. ['x0', 'x1', 'x2']); resume with the model it was trained from"
    )


def test_the_dataset_reaches_trls_sampler(tmp_path):
    trainer = Trainer(tmp_path)
    seen = []
    trainer.sampler = RepeatSampler(list(range(2)), mini_repeat_count=1)
    Engine._get_train_sampler = lambda self, dataset=None: seen.append(dataset) or self.sampler
    try:
        trainer._get_train_sampler("data")
    finally:
        Engine._get_train_sampler = lambda self, dataset=None: self.sampler
    assert seen == ["data"]


def test_the_rollout_buffer_is_restored_whole(tmp_path):
    # the buffer holds whatever TRL's rollout returned; our own file is unpickled in full (weights_only=False)
    source = Trainer(tmp_path)
    source._buffered_inputs = [{"payload": Payload()}]
    (tmp_path / "ck").mkdir()
    source._save_rng_state(str(tmp_path / "ck"))
    resumed = Trainer(tmp_path)
    resumed._load_rng_state(str(tmp_path / "ck"))
    assert isinstance(resumed._buffered_inputs[0]["payload"], Payload)


def test_a_line_without_a_step_is_kept_at_step_1(tmp_path):
    log = tmp_path / "selection.jsonl"
    log.write_text('{"r": 1}\n{"step": 1}\n')
    trainer = Trainer(tmp_path)
    trainer.state.global_step = 1
    trainer._truncate_selection_log()
    assert log.read_text() == '{"r": 1}\n'
