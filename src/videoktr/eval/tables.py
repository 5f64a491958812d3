"""Each benchmark's published tables (``summary["tables"]``), computed with the chosen scorer's denominator rule.

A table is the accuracy over a scope (the whole run, or one value of a category such as a Video-MME duration) with
breakdowns by other categories inside it::

    {"duration/short": {"overall": {"n": 2, "correct": 1, "accuracy": 0.5},
                        "domain": {"Knowledge": {"n": 2, "correct": 1, "accuracy": 0.5}}, ...},
     "all": {...}}

``n`` counts the items the scorer keeps in its denominator (``counted``; Video-MME's official scorer drops
unparseable answers, lmms-eval empty ones); a row whose items were all dropped has ``n`` 0 and ``accuracy`` None.
Regression items (``mean_mra``) are not in these tables. Rows follow the order the reference prints them; values it
does not list come after, sorted. Unlike the references, rows with no items at all are not shown (Video-MME's script
prints them as 0.0%, lmms-eval's VideoMMMU as ``num 0``).

- ``videomme`` (BradyFU/Video-MME ``eval_your_results.py``): one table per duration (short, medium, long) and one
  over all durations ("Evaluation on the entire dataset"), each with video categories (``domain``), sub-categories
  and task types.
- ``videommmu`` (lmms-eval ``tasks/videommmu/utils.py`` ``videommmu_aggregate_results``): one table per track (each
  track is its own lmms-eval task; the group has no pooled figure), with domains ("Overall-<domain>") and subjects.
- ``mmvu`` (lmms-eval ``tasks/mmvu/utils.py`` ``mmvu_aggregate_results_val``): the run, per discipline.
- ``video-holmes`` (its ``evaluate.py``): the run, per question type.
- ``tempcompass`` (its ``eval_*.py`` + ``merge_eval_result.py``): one table per task, per temporal dimension.

A new benchmark registers a :class:`TableSpec` in :data:`TABLES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from videoktr.core.registry import Registry
from videoktr.eval.benchmarks import MMVU_DISCIPLINES, VIDEOMMMU_DOMAINS


@dataclass(frozen=True)
class TableSpec:
    """How a benchmark publishes its accuracies.

    ``scope``: the category whose values each get a table (``None``: one table over the run); ``whole``: also a
    table over the run, named ``all`` (always true when ``scope`` is None); ``rows``: the categories broken down
    inside each table; ``order``: the reference's row order per category (and for ``scope``'s values);
    ``strip_scope``: row values start with ``<scope value>/``, dropped in the row label (TempCompass ``task_dim``).
    """

    scope: str | None
    rows: tuple[str, ...]
    whole: bool = False
    order: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    strip_scope: bool = False


TABLES: Registry[TableSpec] = Registry("benchmark table layout")

# Video-MME's eval_your_results.py: CATEGORIES, SUB_CATEGORIES, TASK_CATEGORIES (in its order)
_VIDEOMME_ORDER = {
    "duration": ("short", "medium", "long"),
    "domain": ("Knowledge", "Film & Television", "Sports Competition", "Artistic Performance", "Life Record",
               "Multilingual"),
    "sub_category": ("Humanity & History", "Literature & Art", "Biology & Medicine", "Finance & Commerce",
                     "Astronomy", "Geography", "Law", "Life Tip", "Technology", "Animation", "Movie & TV Show",
                     "Documentary", "News Report", "Esports", "Basketball", "Football", "Athletics", "Other Sports",
                     "Stage Play", "Magic Show", "Variety Show", "Acrobatics", "Handicraft", "Food", "Fashion",
                     "Daily Life", "Travel", "Pet & Animal", "Exercise", "Multilingual"),
    "task_type": ("Temporal Perception", "Spatial Perception", "Attribute Perception", "Action Recognition",
                  "Object Recognition", "OCR Problems", "Counting Problem", "Temporal Reasoning", "Spatial Reasoning",
                  "Action Reasoning", "Object Reasoning", "Information Synopsis"),
}  # fmt: skip
TABLES.add("videomme", TableSpec("duration", ("domain", "sub_category", "task_type"), True, _VIDEOMME_ORDER))
TABLES.add(
    "videommmu",
    TableSpec(
        "track",
        ("domain", "subject"),
        order={
            "track": ("Perception", "Comprehension", "Adaptation"),
            "domain": tuple(dict.fromkeys(VIDEOMMMU_DOMAINS.values())),
            "subject": tuple(VIDEOMMMU_DOMAINS),  # grouped by domain, as lmms-eval prints them
        },
    ),
)
TABLES.add(
    "mmvu",
    TableSpec(None, ("discipline",), order={"discipline": tuple(dict.fromkeys(MMVU_DISCIPLINES.values()))}),
)
TABLES.add("video-holmes", TableSpec(None, ("question_type",), order={
    "question_type": ("SR", "IMC", "TCI", "TA", "MHR", "PAR", "CTI")}))  # fmt: skip
TABLES.add(
    "tempcompass",
    TableSpec(
        "task",
        ("task_dim",),
        order={"task": ("multi-choice", "yes_no", "caption_matching")},
        strip_scope=True,
    ),
)


def _cell(records: list[Mapping[str, Any]]) -> dict[str, Any]:
    counted = [r for r in records if r.get("counted", True)]
    correct = sum(bool(r["correct"]) for r in counted)
    return {"n": len(counted), "correct": correct, "accuracy": correct / len(counted) if counted else None}


def _ordered(values: Iterable[str], order: tuple[str, ...]) -> list[str]:
    values = set(values)
    return [v for v in order if v in values] + sorted(values - set(order))


def _table(records: list[Mapping[str, Any]], spec: TableSpec, prefix: str) -> dict[str, Any]:
    table: dict[str, Any] = {"overall": _cell(records)}
    for name in spec.rows:
        groups: dict[str, list] = {}
        for record in records:
            value = record.get("categories", {}).get(name)
            if value is not None:
                groups.setdefault(value, []).append(record)
        labels = {v: v[len(prefix) :] if prefix and v.startswith(prefix) else v for v in groups}
        order = tuple(prefix + v for v in spec.order.get(name, ())) if prefix else spec.order.get(name, ())
        table[name] = {labels[v]: _cell(groups[v]) for v in _ordered(groups, order)}
    return table


def published_tables(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The published tables of the records' benchmark (see the module docstring); ``{}`` when it has none.

    ``records``: prediction records (:func:`videoktr.eval.scoring.prediction_record`) of one benchmark; regression
    items are left out."""
    records = [r for r in records if r.get("metric", "accuracy") == "accuracy"]
    benchmarks = {r.get("benchmark", "") for r in records}
    if len(benchmarks) != 1 or next(iter(benchmarks)) not in TABLES:
        return {}
    spec = TABLES.get(benchmarks.pop())
    tables: dict[str, dict[str, Any]] = {}
    if spec.scope is not None:
        scopes: dict[str, list] = {}
        for record in records:
            value = record.get("categories", {}).get(spec.scope)
            if value is not None:
                scopes.setdefault(value, []).append(record)
        for value in _ordered(scopes, spec.order.get(spec.scope, ())):
            prefix = f"{value}/" if spec.strip_scope else ""
            tables[f"{spec.scope}/{value}"] = _table(scopes[value], spec, prefix)
    if spec.scope is None or spec.whole:
        tables["all"] = _table(records, spec, "")
    return tables
