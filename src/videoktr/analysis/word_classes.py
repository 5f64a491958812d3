"""Word classes of completion tokens, and their shares among each signal's selected tokens (paper RQ3).

A *labeller* maps a completion text to ``(start, end, class)`` character spans covering its words. A token takes the
class of the first span that overlaps its characters; a token that overlaps no span gets ``NO_WORD`` (whitespace,
punctuation and tags such as ``<think>`` for the lexicon; whitespace for spaCy, which tags punctuation itself).

Word classes:
- ``synthetic``: the synthetic generator's lexicon (``videoktr.data.synthetic.EVIDENCE_LEXICON``: ``visual``,
  ``temporal``; ``FILLER_WORDS``: ``filler``; any other word: ``other``).
- ``counterfactual`` (:func:`counterfactual_classes`, from ``videoktr.data.counterfactual``; issue 16 item 1): the
  generator's own reason for each word: ``order`` (changes when only the frame order changes), ``content``
  (changes with the colours/objects only), ``filler`` (every other token); every token of a completion that follows
  no template of the run's question kinds is ``unlabelled``, and the status counts say how many there are.
- ``spacy``: coarse part-of-speech tags (``NOUN``, ``VERB``, ``ADJ``...) of a spaCy pipeline. spaCy is not a
  dependency: :func:`spacy_labeller` raises :class:`PipelineMissing` naming the pipeline and its install command.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

from videoktr.analysis.tokens import TokenRecord

__all__ = [
    "NO_WORD",
    "PipelineMissing",
    "synthetic_labeller",
    "spacy_labeller",
    "token_classes",
    "class_shares",
    "counterfactual_classes",
]

NO_WORD = "no-word"
Span = tuple[int, int, str]
Labeller = Callable[[str], list[Span]]
_WORD_RE = re.compile(r"[A-Za-z]+|\d+")  # the generator's word pattern (videoktr.data.synthetic)


class PipelineMissing(RuntimeError):
    """A spaCy pipeline cannot be loaded; ``pipeline`` and ``install`` say which one and how to get it."""

    def __init__(self, pipeline: str, reason: str):
        self.pipeline = pipeline
        self.install = f"pip install spacy && python -m spacy download {pipeline}"
        super().__init__(
            f"spaCy pipeline {pipeline!r} is not available ({reason}); install it with: {self.install}"
        )


def synthetic_labeller() -> Labeller:
    """Spans of every word (``[A-Za-z]+|\\d+``) with the generator's class: ``visual`` / ``temporal`` (its evidence
    lexicon), ``filler`` (the other words its reasoning templates use), ``other`` (words the generator never writes)."""
    from videoktr.data.synthetic import EVIDENCE_LEXICON, FILLER_WORDS

    def label(text: str) -> list[Span]:
        spans = []
        for match in _WORD_RE.finditer(text):
            word = match.group(0).lower()
            kind = next((k for k, words in EVIDENCE_LEXICON.items() if word in words), None)
            kind = kind or ("filler" if word in FILLER_WORDS else "other")
            spans.append((match.start(), match.end(), kind))
        return spans

    return label


def spacy_labeller(pipeline: str = "en_core_web_sm") -> Labeller:
    """Spans of every spaCy token with its coarse POS tag (``token.pos_``). Raises :class:`PipelineMissing` when
    spaCy or the pipeline cannot be loaded."""
    try:
        import spacy
    except ImportError as err:
        raise PipelineMissing(pipeline, f"spaCy is not installed: {err}") from err
    try:
        nlp = spacy.load(pipeline, disable=["ner", "lemmatizer"])
    except (OSError, ImportError) as err:
        raise PipelineMissing(pipeline, str(err).splitlines()[0]) from err

    def label(text: str) -> list[Span]:
        return [(t.idx, t.idx + len(t.text), t.pos_) for t in nlp(text) if not t.is_space]

    return label


def token_classes(records: Sequence[TokenRecord], spans: Sequence[Span]) -> list[str]:
    """(T,) class of each token: the first span overlapping ``[rec.start, rec.end)``, else ``NO_WORD``."""
    out = []
    for rec in records:
        hit = next((kind for a, b, kind in spans if a < rec.end and rec.start < b), None)
        out.append(hit if hit is not None else NO_WORD)
    return out


def class_shares(
    records_list: Sequence[Sequence[TokenRecord]],
    classes_list: Sequence[Sequence[str]],
    signals: Sequence[str],
    unlabelled: str | None = None,
) -> dict[str, dict]:
    """Per signal (and ``union``, ``all`` = every token): ``{"n": selected tokens, "counts": {class: n},
    "shares": {class: n / selected}}``; ``shares`` is ``{}`` when nothing was selected. With ``unlabelled`` (a
    class name) also ``labelled_shares``: the shares among the selected tokens of every other class."""
    counters: dict[str, Counter] = {name: Counter() for name in [*signals, "union", "all"]}
    for records, classes in zip(records_list, classes_list, strict=True):
        for rec, cls in zip(records, classes, strict=True):
            counters["all"][cls] += 1
            if rec.union:
                counters["union"][cls] += 1
            for s in signals:
                if rec.selected.get(s):
                    counters[s][cls] += 1
    out = {}
    for name, counter in counters.items():
        n = sum(counter.values())
        counts = dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))
        out[name] = {"n": n, "counts": counts, "shares": {k: v / n for k, v in counts.items()} if n else {}}
        if unlabelled is not None:
            known = {k: v for k, v in counts.items() if k != unlabelled}
            total = sum(known.values())
            out[name]["labelled_shares"] = {k: v / total for k, v in known.items()} if total else {}
    return out


def counterfactual_classes(
    records_list: Sequence[Sequence[TokenRecord]], kinds: Sequence[str]
) -> tuple[list[list[str]], dict[str, int]]:
    """(per completion (T,) ``order`` / ``content`` / ``filler`` / ``unlabelled``, count of each labelling status)
    of completions of a run trained on the synthetic question ``kinds``."""
    from videoktr.analysis.attribution import token_labels
    from videoktr.data.counterfactual import label_completions

    texts = ["".join(rec.text for rec in records) for records in records_list]
    labelled, counts = label_completions(texts, list(kinds))
    classes = [
        token_labels(records, lt.spans, ("order", "content"))
        if lt.labelled
        else ["unlabelled"] * len(records)
        for records, lt in zip(records_list, labelled, strict=True)
    ]
    return classes, counts
