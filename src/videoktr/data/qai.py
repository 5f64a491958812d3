"""Question-Answer Inversion (QAI), TW-GRPO's augmentation from single-answer to multi-answer questions.

``videoktr qai --in FILE --out FILE --prob 0.5 --seed S [--rules auto|nextgqa|star]``

As the authors' scripts (github longmalongma/TW-GRPO at aa529ff, ``data/question_answer_inverse/convert_nextgqa.py``
and ``convert_star.py``): with probability ``prob`` a record is inverted: the question is negated, the formerly
correct option becomes the only wrong one, ``k`` of the ``n`` formerly wrong options are kept as the correct set
(``k = randint(1, n)``, ``sample(wrong, k)``), the kept options and the old answer are shuffled and relabelled
A, B, ...; the solution lists the correct letters comma-separated (``<answer>B,C</answer>``) and ``is_negated`` is
set. The draws per record are the authors' (``random()``, ``randint``, ``sample``, ``shuffle``) on a seeded
``random.Random``.

Negation rules (the authors' maps; ``rules: auto`` uses ``star`` for records whose ``data_source`` is STAR):

- ``nextgqa``: the *second* word of the question, if one of did/does/do/is/are/was/were, gets n't
  ("why did the boy ..." -> "why didn't the boy ...").
- ``star``: a question starting with "what will" / "what happened" -> "what won't" / "what didn't happen"; else the
  first, then the second word, if one of did/was/would/able, is negated (did -> didn't, was -> wasn't, would -> wouldn't,
  able -> unable). Extensions (not in the authors' code, whose position checks miss half of STAR's templates):
  the third word of "Which object was/did/would ..." is negated, and otherwise the word "able" anywhere becomes
  "unable" (feasibility: "Which object is the person able to take ...?").

Deliberate differences from the scripts: a record whose question no rule negates is **kept unchanged and counted**
(the scripts invert its answer anyway, turning "why did X" into a question whose correct set is the wrong
options: a bug not to copy); the question keeps its case and spacing (the scripts lower-case it and collapse
spaces); records that are not single-answer multiple choice are kept and counted instead of crashing.

Record formats: Video-R1 (``problem``, ``options`` ["A. text"], ``solution`` "<answer>B</answer>") and the
authors' NExT-GQA files (``question``, ``options`` ["(A) text"], ``answer`` "(A)", plus ``problem``/``solution``);
each is written back in its own format. A record whose gold letter is not among its options is refused (its id).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videoktr.errors import UserError

NEXTGQA_NEGATIONS = {
    "did": "didn't", "does": "doesn't", "do": "don't", "is": "isn't", "are": "aren't", "was": "wasn't",
    "were": "weren't",
}  # fmt: skip
STAR_PHRASES = {"what will": "what won't", "what happened": "what didn't happen"}
STAR_NEGATIONS = {"did": "didn't", "was": "wasn't", "would": "wouldn't", "able": "unable"}
RULES = ("auto", "nextgqa", "star")

_WORD = re.compile(r"\S+")
_VIDEO_R1_OPTION = re.compile(r"^\s*([A-Z])\.\s*(.*)$", re.DOTALL)
_NEXTGQA_OPTION = re.compile(r"^\s*\(([A-Z])\)\s*(.*)$", re.DOTALL)
_ABLE = re.compile(r"\bable\b", re.IGNORECASE)
_SOLUTION = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)

KEPT_COIN = "not drawn (coin)"
KEPT_NO_RULE = "no negation rule matches the question"
KEPT_NOT_SINGLE = "not single-answer multiple choice"
KEPT_FEW_OPTIONS = "fewer than 2 options"


def _same_case(word: str, replacement: str) -> str:
    return replacement[0].upper() + replacement[1:] if word[:1].isupper() else replacement


def _replace_word(question: str, match: re.Match, replacement: str) -> str:
    return question[: match.start()] + _same_case(match.group(0), replacement) + question[match.end() :]


def negate_nextgqa(question: str) -> str | None:
    """NExT-GQA rule: negate the second word if it is an auxiliary of :data:`NEXTGQA_NEGATIONS`; else None."""
    words = list(_WORD.finditer(question))
    if len(words) >= 2 and words[1].group(0).lower() in NEXTGQA_NEGATIONS:
        return _replace_word(question, words[1], NEXTGQA_NEGATIONS[words[1].group(0).lower()])
    return None


def negate_star(question: str) -> str | None:
    """STAR rules (module docstring): leading phrase, else second word, else "able" anywhere; else None."""
    lowered = question.lower()
    for phrase, negated in STAR_PHRASES.items():
        if re.match(re.escape(phrase) + r"\b", lowered):
            return _same_case(question, negated) + question[len(phrase) :]
    words = list(_WORD.finditer(question))
    candidates = words[:2]  # the authors: a leading did/was/able/would, else the second word
    if [w.group(0).lower() for w in words[:2]] == ["which", "object"]:
        candidates = words[:3]  # extension: "Which object was/did/would ..."
    for word in candidates:
        if word.group(0).lower() in STAR_NEGATIONS:
            return _replace_word(question, word, STAR_NEGATIONS[word.group(0).lower()])
    able = _ABLE.search(question)
    return _replace_word(question, able, "unable") if able else None


@dataclass
class QAIReport:
    """What ``invert_file`` did: counts of inverted and kept records, with the reason each was kept."""

    total: int = 0
    inverted: int = 0
    kept: Counter = field(default_factory=Counter)
    kept_ids: dict = field(default_factory=dict)  # reason -> first few record ids

    def add_kept(self, reason: str, record_id: Any) -> None:
        self.kept[reason] += 1
        self.kept_ids.setdefault(reason, [])
        if len(self.kept_ids[reason]) < 5:
            self.kept_ids[reason].append(record_id)

    def format(self) -> str:
        lines = [f"{self.total} records: {self.inverted} inverted, {sum(self.kept.values())} kept unchanged"]
        for reason, count in sorted(self.kept.items()):
            shown = ", ".join(repr(r) for r in self.kept_ids[reason])
            lines.append(f"  kept, {reason}: {count} (e.g. {shown})")
        return "\n".join(lines)


def _record_id(record: dict, index: int) -> str:
    for key in ("problem_id", "id"):
        if record.get(key) is not None:
            return str(record[key])
    return f"#{index}"


def _parse(record: dict, rid: str) -> tuple[str, str, list[str], str | None]:
    """(format, question, option texts, gold letter or None if not single-answer)."""
    options = record.get("options")
    nextgqa = "answer" in record and "question" in record
    pattern = _NEXTGQA_OPTION if nextgqa else _VIDEO_R1_OPTION
    if not isinstance(options, list) or not options:
        return ("nextgqa" if nextgqa else "video-r1"), "", [], None
    texts, letters = [], []
    for k, option in enumerate(options):
        match = pattern.match(str(option))
        want = chr(ord("A") + k)
        if match is None or match.group(1) != want:
            label = f"'({want}) text'" if nextgqa else f"'{want}. text'"
            raise UserError(f"record {rid}: option {option!r} should be labelled {label}")
        letters.append(match.group(1))
        texts.append(match.group(2).strip())
    if nextgqa:
        gold = [piece.strip().strip("()") for piece in str(record["answer"]).split(",")]
        question = str(record["question"])
    else:
        if record.get("problem_type", "multiple choice") != "multiple choice":
            return "video-r1", str(record.get("problem", "")), texts, None
        found = _SOLUTION.search(str(record.get("solution", "")))
        gold = [p.strip() for p in (found.group(1) if found else "").replace(" ", "").split(",")]
        question = str(record.get("problem", ""))
    if any(g not in letters for g in gold):
        raise UserError(f"record {rid}: answer {gold} is not among its option letters {letters}")
    return ("nextgqa" if nextgqa else "video-r1"), question, texts, gold[0] if len(gold) == 1 else None


def invert_record(
    record: dict, rng: random.Random, probability: float = 0.5, rules: str = "auto", index: int = 0
) -> tuple[dict, str | None]:
    """One record through QAI: ``(new record, None)`` if inverted, ``(copy, reason)`` if kept unchanged."""
    rid = _record_id(record, index)
    fmt, question, texts, gold = _parse(record, rid)
    out = dict(record, is_negated=False)
    if rng.random() >= probability:
        return out, KEPT_COIN
    if gold is None:
        return out, KEPT_NOT_SINGLE
    if len(texts) < 2:
        return out, KEPT_FEW_OPTIONS
    star = rules == "star" or (rules == "auto" and str(record.get("data_source", "")).upper() == "STAR")
    negated = negate_star(question) if star else negate_nextgqa(question)
    if negated is None:
        return out, KEPT_NO_RULE
    correct = ord(gold) - ord("A")
    wrong = [text for k, text in enumerate(texts) if k != correct]
    kept = rng.sample(wrong, rng.randint(1, len(wrong)))
    pool = [(texts[correct], False)] + [(text, True) for text in kept]
    rng.shuffle(pool)
    letters = [chr(ord("A") + k) for k in range(len(pool))]
    answers = [letter for letter, (_, ok) in zip(letters, pool) if ok]
    out.update(is_negated=True, solution=f"<answer>{','.join(answers)}</answer>")
    if fmt == "nextgqa":
        out.update(
            question=negated,
            options=[f"({letter}) {text}" for letter, (text, _) in zip(letters, pool)],
            answer=",".join(f"({a})" for a in answers),
            problem=negated
            + "\n"
            + "\n".join(f"{letter} {text}" for letter, (text, _) in zip(letters, pool)),
        )
    else:
        out.update(problem=negated, options=[f"{letter}. {text}" for letter, (text, _) in zip(letters, pool)])
    return out, None


def invert_records(
    records: list[dict], probability: float = 0.5, seed: int = 0, rules: str = "auto"
) -> tuple[list[dict], QAIReport]:
    """QAI over a list of records with one seeded ``random.Random``; returns the new records and the report."""
    if not 0.0 <= probability <= 1.0:
        raise UserError(f"qai: --prob {probability} must be between 0 and 1")
    if rules not in RULES:
        raise UserError(f"qai: --rules {rules!r} is not one of {', '.join(RULES)}")
    rng = random.Random(seed)
    report, out = QAIReport(total=len(records)), []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise UserError(f"qai: record #{index} is not a JSON object")
        new, reason = invert_record(record, rng, probability, rules, index)
        if reason is None:
            report.inverted += 1
        else:
            report.add_kept(reason, _record_id(record, index))
        out.append(new)
    return out, report


def _read(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"qai: input file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"qai: {path} is not valid JSON ({err})") from err
    if not isinstance(data, list):
        raise UserError(f"qai: {path} must hold a JSON list of records")
    return data


def run(args: argparse.Namespace) -> int:
    source, target = Path(args.input), Path(args.output)
    if source.resolve() == target.resolve():
        raise UserError("qai: --out must differ from --in (the input is kept)")
    records, report = invert_records(_read(source), args.prob, args.seed, args.rules)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix == ".jsonl":
        target.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
        )
    else:
        target.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(report.format())
    print(f"written: {target}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "qai",
        help="Question-Answer Inversion (TW-GRPO): single-answer -> multi-answer questions",
        description="Negate questions and invert their answers with probability --prob (TW-GRPO's QAI). "
        "Prints how many records were inverted and how many were kept, and why.",
    )
    parser.add_argument("--in", dest="input", required=True, help="input .json (list) or .jsonl records")
    parser.add_argument("--out", dest="output", required=True, help="output file (.json or .jsonl)")
    parser.add_argument("--prob", type=float, default=0.5, help="probability of inverting a record")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same output)")
    parser.add_argument(
        "--rules", choices=RULES, default="auto", help="negation rules (auto: star for data_source STAR)"
    )
    parser.set_defaults(func=run)
