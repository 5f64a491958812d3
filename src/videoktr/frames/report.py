"""The Frame-Voyager demo report: the selector table and a picture of the chosen frames for a few questions."""

from __future__ import annotations

from pathlib import Path

ROWS = ("uniform", "random", "voyager", "oracle", "voyager_oracle_labels")


def plot_choices(path: Path, records: list[dict], choices: dict, feats: dict, n: int = 4) -> Path:
    """One row per question: the M candidate frames; evidence frames framed green, uniform's picks marked
    by a blue bar, voyager's by an orange bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picked = records[:n]
    m = max(feats[r["problem_id"]].video.frames.shape[0] for r in picked)
    fig, axes = plt.subplots(len(picked), m, figsize=(m * 0.9, len(picked) * 1.1), squeeze=False)
    for row, record in enumerate(picked):
        video = feats[record["problem_id"]].video
        evidence = set(record["evidence_frames"])
        uniform = set(choices["uniform"][record["problem_id"]])
        voyager = set(choices["voyager"][record["problem_id"]])
        for col in range(m):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= video.frames.shape[0]:
                ax.axis("off")
                continue
            index = video.frame_indices[col]
            ax.imshow(video.frames[col].permute(1, 2, 0).numpy())
            for side in ax.spines.values():
                side.set_color("green" if index in evidence else "white")
                side.set_linewidth(3 if index in evidence else 0.5)
            marks = ("U" if index in uniform else "") + ("V" if index in voyager else "")
            ax.set_xlabel(f"{index} {marks}", fontsize=6, color="darkorange" if "V" in marks else "black")
        axes[row][0].set_ylabel(record["problem"].replace("Which color appears ", "")[:28], fontsize=5)
    fig.suptitle("candidates (green: evidence; U: uniform pick, V: voyager pick)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_frames_report(out: Path, results: dict, records: list[dict], choices: dict, feats: dict) -> Path:
    from videoktr.analysis.report import markdown_table

    picture = plot_choices(out / "chosen_frames.png", records, choices, feats)
    s = results["settings"]
    rows = [
        [name, v["sufficiency"], v["evidence_precision"], v["evidence_recall"], v["accuracy"]]
        for name in ROWS
        if (v := results["selectors"].get(name))
    ]
    diff = results["voyager_minus_uniform"]
    text = [
        "# Frame-Voyager demo",
        "",
        f"M={s['M']} candidates, T={s['T']} frames (units of {s['unit']}), {s['n_test']} test questions, "
        f"{s['n_labelled']} labelled training records ({s['n_kept']} kept).",
        "",
        markdown_table(
            ["selector", "sufficiency", "evidence precision", "evidence recall", "accuracy"], rows
        ),
        "",
        f"Voyager - uniform accuracy: {diff['accuracy']['mean']} (95% paired bootstrap over questions "
        f"{diff['accuracy']['ci95']}, excludes 0: {diff['accuracy']['excludes_zero']}).",
        f"Label/oracle agreement: {results['label_agreement']}.",
        f"Seconds per stage: {results['seconds']}; CPU seconds (user + sys of this process): "
        f"{results.get('cpu_seconds')}.",
        "",
        f"![chosen frames]({picture.name})",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(text))
    return path
