"""``videoktr frames demo --out DIR``: Frame-Voyager end to end on sparse-evidence videos, on a CPU.

Stages (wall ``seconds`` and this process's ``cpu_seconds`` per stage in ``results.json``): 1. sparse synthetic videos, 2. tiny Qwen2.5-VL, 3. SFT of the
video LLM on sufficient T-frame views of the training records (``frame_indices`` in its data), 4. one vision pass
per record over the M candidates, 5. labels: every T-frame unit combination of ``n_label`` training records scored
by the SFT model's loss on the gold answer, 6. querier training, 7. selection on the test records with uniform,
random, oracle and voyager, and the SFT model's accuracy on each selection (same T), 8. report.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SELECTOR_ORDER = ("uniform", "random", "voyager", "oracle")
SFT_VIEW_EXTRAS = ("random", "distractors")


@dataclass
class FramesDemoConfig:
    """Settings of the Frame-Voyager demo (defaults: the CPU run reported in docs/results.md)."""

    seed: int = field(default=0, metadata={"help": "Seed of data, model init, SFT, labels and querier."})
    n_train: int = field(default=1536, metadata={"help": "Sparse training records (SFT views and labels)."})
    n_test: int = field(default=128, metadata={"help": "Held-out records: selection and accuracy."})
    n_label: int = field(default=448, metadata={"help": "Training records labelled for the querier."})
    video_frames: int = field(default=16, metadata={"help": "Frames per synthetic video (= M by default)."})
    height: int = field(default=56, metadata={"help": "Frame height (pixels)."})
    width: int = field(default=112, metadata={"help": "Frame width (pixels)."})
    template: str = field(default="short", metadata={"help": "Prompt template."})
    sft_views: int = field(default=1, metadata={"help": "Sufficient T-frame views per SFT record."})
    sft_insufficient_views: int = field(
        default=0,
        metadata={
            "help": "Insufficient T-frame views per SFT record (random units missing some evidence), trained on "
            "the same gold target: the model learns its answer prior when the evidence is not shown, so its "
            "loss separates sufficient from insufficient combinations (the labeller's job)."
        },
    )
    sft_view_extras: str = field(
        default="random",
        metadata={
            "help": "How a sufficient SFT view fills its units beyond the evidence: 'random' units, or "
            "'distractors' (units holding the record's other squares first, then random ones): the model cannot "
            "answer from 'a colour that is shown' and must use the asked square's place, so its loss on a "
            "combination without that square rises (the labeller's job)."
        },
    )
    sft_steps: int = field(default=500, metadata={"help": "SFT optimiser steps."})
    sft_lr: float = field(
        default=1e-3,
        metadata={
            "help": "SFT learning rate (cosine). 3e-3 (the former default) left some runs answering one colour "
            "whatever the frames; 1e-3 reached a 2.5x lower SFT loss (docs/results.md)."
        },
    )
    sft_batch_size: int = field(default=16, metadata={"help": "SFT batch size."})
    max_new_tokens: int = field(default=32, metadata={"help": "Tokens generated per test answer (greedy)."})
    eval_batch_size: int = field(default=32, metadata={"help": "Evaluation batch size."})
    bootstrap: int = field(default=2000, metadata={"help": "Paired bootstrap resamples of test questions."})
    diagnose_oracle_labels: bool = field(
        default=True,
        metadata={
            "help": "Also train the querier on oracle labels of the same records (row voyager_oracle_labels): "
            "tells label quality apart from what the querier can learn."
        },
    )
    voyager: dict = field(
        default_factory=dict,
        metadata={"help": "VoyagerConfig fields (candidates, frames, ...); seed is ours."},
    )
    model: dict = field(
        default_factory=dict,
        metadata={
            "help": "TinyModelConfig fields of the video LLM (the labeller and answerer), e.g. "
            "{num_hidden_layers: 4}; seed is ours."
        },
    )

    def __post_init__(self) -> None:
        from videoktr.errors import UserError

        if self.sft_view_extras not in SFT_VIEW_EXTRAS:
            raise UserError(
                f"frames demo: sft_view_extras={self.sft_view_extras!r}; valid: {', '.join(SFT_VIEW_EXTRAS)}"
            )

    def voyager_config(self):
        from videoktr.frames.config import VoyagerConfig

        return VoyagerConfig(**{"seed": self.seed, **self.voyager})

    def model_config(self):
        """The tiny model's config; an unknown ``model`` key is refused with the valid ones."""
        from videoktr.errors import UserError
        from videoktr.models.tiny import TinyModelConfig

        names = {f.name for f in dataclasses.fields(TinyModelConfig)} - {"seed"}
        unknown = sorted(set(self.model) - names)
        if unknown:
            raise UserError(
                f"frames demo: unknown model setting(s) {unknown}; valid: {', '.join(sorted(names))}"
            )
        return TinyModelConfig(**{"seed": self.seed, **self.model})


def _sampling(cfg: FramesDemoConfig, vcfg):
    from videoktr.data.video import VideoSamplingConfig

    return VideoSamplingConfig(num_frames=vcfg.frames, max_pixels=cfg.height * cfg.width)


def _sft(cfg, vcfg, out: Path, data: dict, model_dir: Path) -> Path:
    from transformers import TrainingArguments

    from videoktr.data.video import read_frame_count
    from videoktr.frames.features import candidate_indices
    from videoktr.frames.sparse import distractor_units, insufficient_view, sufficient_view
    from videoktr.models.tiny import load_model_and_processor
    from videoktr.training.sft import SFTOptions, run_sft

    records = json.loads(Path(data["train"]).read_text())
    rng = np.random.default_rng([cfg.seed, 3])
    views = []
    for record in records:
        total = read_frame_count(Path(data["root"]) / record["path"])
        candidates = candidate_indices(total, vcfg.candidates, record["problem_id"])
        prefer = (
            distractor_units(record, candidates, vcfg.unit) if cfg.sft_view_extras == "distractors" else ()
        )
        for _ in range(cfg.sft_views):
            frames = sufficient_view(record, candidates, vcfg.unit, vcfg.k_units, rng, prefer=prefer)
            views.append({**record, "frame_indices": frames})
        for _ in range(cfg.sft_insufficient_views):
            frames = insufficient_view(record, candidates, vcfg.unit, vcfg.k_units, rng)
            if frames is not None:
                views.append({**record, "frame_indices": frames})
    path = out / "sft"
    (path).mkdir(parents=True, exist_ok=True)
    (path / "sft_views.json").write_text(json.dumps(views))
    model, processor = load_model_and_processor(model_dir)
    args = TrainingArguments(
        output_dir=str(path),
        max_steps=cfg.sft_steps,
        learning_rate=cfg.sft_lr,
        per_device_train_batch_size=cfg.sft_batch_size,
        lr_scheduler_type="cosine",
        warmup_steps=10,
        logging_steps=25,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=cfg.seed,
        disable_tqdm=True,
    )
    trainer = run_sft(
        model, processor, views, data["root"], _sampling(cfg, vcfg), args, SFTOptions(cfg.template)
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    (path / "log_history.json").write_text(json.dumps(trainer.state.log_history))
    return path


def encode_all(model, processor, records, root, vcfg, sampling, template) -> dict:
    from videoktr.frames.features import decode_candidates, encode_candidates, query_text

    out = {}
    for record in records:
        video = decode_candidates(
            Path(root) / record["path"], record["problem_id"], vcfg.candidates, sampling
        )
        out[record["problem_id"]] = encode_candidates(
            model, processor, video, query_text(record, vcfg, template), vcfg.unit, sampling
        )
    return out


def selection_metrics(record: dict, frames: list[int]) -> dict:
    from videoktr.frames.sparse import is_sufficient

    evidence = set(record["evidence_frames"])
    hit = len(evidence.intersection(frames))
    return {
        "sufficient": is_sufficient(record["evidence_rule"], frames),
        "precision": hit / len(frames),
        "recall": hit / len(evidence),
    }


def summarize_selection(records: list[dict], frames_by_id: dict, rows: list[dict]) -> dict:
    """Sufficiency, evidence precision/recall and accuracy over ``records`` (and per question kind)."""
    metrics = [selection_metrics(r, frames_by_id[r["problem_id"]]) for r in records]
    correct = {row["id"]: float(row["correct"]) for row in rows}

    def mean(values):
        return round(float(np.mean(values)), 4)

    out = {
        "sufficiency": mean([m["sufficient"] for m in metrics]),
        "evidence_precision": mean([m["precision"] for m in metrics]),
        "evidence_recall": mean([m["recall"] for m in metrics]),
        "accuracy": mean([correct[r["problem_id"]] for r in records]),
        "by_kind": {},
        "_correct": [correct[r["problem_id"]] for r in records],
        "_sufficient": [float(m["sufficient"]) for m in metrics],
    }
    for kind in sorted({r["question_kind"] for r in records}):
        idx = [i for i, r in enumerate(records) if r["question_kind"] == kind]
        out["by_kind"][kind] = {
            "sufficiency": mean([metrics[i]["sufficient"] for i in idx]),
            "accuracy": mean([out["_correct"][i] for i in idx]),
        }
    return out


def paired_bootstrap(a: list[float], b: list[float], resamples: int, seed: int) -> dict:
    """Mean of a - b over questions and its 95% percentile interval from resampling questions (paired)."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": round(float(diff.mean()), 4), "ci95": [round(float(low), 4), round(float(high), 4)],
            "excludes_zero": bool(low > 0 or high < 0)}  # fmt: skip


def evaluate_selection(
    model, processor, records, frames_by_id, root, sampling, cfg, predictions: Path
) -> list[dict]:
    from videoktr.eval.backends import HFBackend
    from videoktr.eval.benchmarks import load_benchmark
    from videoktr.eval.runner import EvalRunConfig, GenerationSettings, run_evaluation

    test_file = predictions.with_suffix(".records.json")
    test_file.write_text(json.dumps([{**r, "frame_indices": frames_by_id[r["problem_id"]]} for r in records]))
    items = load_benchmark("video-r1", test_file)
    indices = {str(Path(root) / r["path"]): frames_by_id[r["problem_id"]] for r in records}
    generation = GenerationSettings(max_new_tokens=cfg.max_new_tokens, temperature=0.0)
    backend = HFBackend(model, processor, sampling, generation, frame_indices=indices)
    config = EvalRunConfig(video_root=Path(root), batch_size=cfg.eval_batch_size, template=cfg.template)
    if predictions.exists():
        predictions.unlink()
    rows, _ = run_evaluation(backend, items, config, predictions)
    return rows


def run_frames_demo(cfg: FramesDemoConfig, out: Path, console=None) -> dict[str, Any]:
    from rich.console import Console

    from videoktr.data.schema import load_records
    from videoktr.data.synthetic import synthetic_corpus
    from videoktr.frames.features import model_fingerprint
    from videoktr.frames.labels import label_agreement, label_record
    from videoktr.frames.report import write_frames_report
    from videoktr.frames.select import select_frames
    from videoktr.frames.sparse import SparseConfig, make_sparse
    from videoktr.frames.train import train_querier
    from videoktr.models.tiny import build_tiny_model, load_model_and_processor

    console = console or Console()
    vcfg = cfg.voyager_config()
    out.mkdir(parents=True, exist_ok=True)
    (out / "frames_demo_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    seconds: dict[str, float] = {}
    cpu_seconds: dict[
        str, float
    ] = {}  # this process's CPU time (user + sys): comparable across machine loads
    clock = [time.time(), time.process_time()]

    def stage(name: str) -> None:
        now, cpu = time.time(), time.process_time()
        seconds[name], cpu_seconds[name] = round(now - clock[0], 1), round(cpu - clock[1], 1)
        clock[:] = [now, cpu]
        console.print(f"[bold]{name}[/bold] done in {seconds[name]} s (CPU {cpu_seconds[name]} s)")

    sampling = _sampling(cfg, vcfg)
    data = make_sparse(
        out / "data", cfg.n_train, cfg.n_test, cfg.seed,
        SparseConfig(num_frames=cfg.video_frames, unit=vcfg.unit, height=cfg.height, width=cfg.width),
    )  # fmt: skip
    stage("data")
    train = load_records(data["train"])
    test = load_records(data["test"])
    model_dir = out / "model"
    build_tiny_model(
        model_dir,
        corpus=synthetic_corpus(train + test, cfg.template),
        config=cfg.model_config(),
    )
    stage("model")
    sft_dir = _sft(cfg, vcfg, out, data, model_dir)
    stage("sft")
    model, processor = load_model_and_processor(sft_dir)
    model.eval()
    label_records = train[: cfg.n_label]
    feats = encode_all(model, processor, label_records + test, data["root"], vcfg, sampling, cfg.template)
    stage("features")
    lines = [
        label_record(model, processor, r, feats[r["problem_id"]], vcfg, cfg.template, sampling)
        for r in label_records
    ]
    with open(out / "labels.jsonl", "w") as handle:
        handle.writelines(json.dumps(line) + "\n" for line in lines)
    agreement = label_agreement(lines)
    stage("labels")
    fingerprint = model_fingerprint(model)
    querier, history = train_querier(feats, lines, vcfg, fingerprint, str(sft_dir))
    querier.save_pretrained(out / "selector", extra={"voyager": dataclasses.asdict(vcfg)})
    (out / "selector" / "train_history.json").write_text(json.dumps(history))
    stage("querier")
    selectors = {name: (name, querier) for name in SELECTOR_ORDER}
    if cfg.diagnose_oracle_labels:  # same records, same querier recipe, labels from the evidence rule
        oracle_cfg = dataclasses.replace(vcfg, label_source="oracle")
        oracle_lines = [
            label_record(None, None, r, feats[r["problem_id"]], oracle_cfg, cfg.template)
            for r in label_records
        ]
        selectors["voyager_oracle_labels"] = (
            "voyager",
            train_querier(feats, oracle_lines, oracle_cfg, fingerprint, "")[0],
        )
        stage("querier (oracle labels, diagnostic)")
    per_selector: dict[str, dict] = {}
    choices: dict[str, dict[str, list[int]]] = {}
    for name, (selector, scorer) in selectors.items():
        frames_by_id = {
            r["problem_id"]: select_frames(selector, r, feats[r["problem_id"]].video.total_frames, vcfg,
                                           candidate=feats[r["problem_id"]], querier=scorer)
            for r in test
        }  # fmt: skip
        choices[name] = frames_by_id
        rows = evaluate_selection(
            model, processor, test, frames_by_id, data["root"], sampling, cfg, out / f"predictions_{name}.jsonl"
        )  # fmt: skip
        per_selector[name] = summarize_selection(test, frames_by_id, rows)
    stage("select+evaluate")
    (out / "selections.json").write_text(json.dumps(choices))
    voy, uni = per_selector["voyager"], per_selector["uniform"]
    results = {
        "settings": {
            "M": vcfg.candidates,
            "T": vcfg.frames,
            "unit": vcfg.unit,
            "K": vcfg.max_combinations,
            "n_test": len(test),
            "n_labelled": len(lines),
            "n_kept": sum(1 for line in lines if line["kept"]),
        },  # fmt: skip
        "selectors": {
            k: {m: v for m, v in s.items() if not m.startswith("_")} for k, s in per_selector.items()
        },
        "label_agreement": agreement,
        "voyager_minus_uniform": {
            "accuracy": paired_bootstrap(voy["_correct"], uni["_correct"], cfg.bootstrap, cfg.seed),
            "sufficiency": paired_bootstrap(voy["_sufficient"], uni["_sufficient"], cfg.bootstrap, cfg.seed),
        },
        "querier_final": history[-1],
    }
    results["bar"] = {
        "sufficiency_vs_uniform_plus_0.20": voy["sufficiency"] >= uni["sufficiency"] + 0.20,
        "sufficiency_vs_0.9_oracle": voy["sufficiency"] >= 0.9 * per_selector["oracle"]["sufficiency"],
        "accuracy_above_uniform": voy["accuracy"] > uni["accuracy"],
    }
    stage("summary")
    results["seconds"] = {**seconds, "total": round(sum(seconds.values()), 1)}
    results["cpu_seconds"] = {**cpu_seconds, "total": round(sum(cpu_seconds.values()), 1)}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_frames_report(out, results, test, choices, feats)
    console.print_json(
        json.dumps({k: results[k] for k in ("selectors", "label_agreement", "bar", "seconds", "cpu_seconds")})
    )
    return results
