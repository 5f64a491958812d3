"""Per-token records of one completion: text piece, character offsets, which signals selected it, scores.

Everything here works on plain Python data (lists of str / bool / float); 1-D or 2-D torch tensors are accepted
wherever a list is, through their ``.tolist()``. No model is needed, only a tokenizer for ``pieces_from_ids``.

Offsets are character offsets into the completion text ``"".join(pieces)``: record k covers
``text[start:end]`` with ``start`` = total length of pieces 0..k-1. They line up with spans computed on the decoded
completion text (e.g. ``videoktr.data.synthetic.label_evidence_words(text)``) as long as the pieces join back to
exactly that text, which is what ``pieces_from_ids`` guarantees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TokenRecord", "token_records", "pieces_from_ids", "records_from_batch", "record_signals"]

_REPLACEMENT_CHAR = "\ufffd"


@dataclass(frozen=True)
class TokenRecord:
    """One completion token.

    ``text`` is the decoded piece (may be "" for a token that only completes a multi-byte character later, see
    ``pieces_from_ids``); ``start``/``end`` are character offsets into the completion text (``end - start ==
    len(text)``); ``selected`` maps signal name -> selected by that signal; ``scores`` maps signal name -> score
    (empty when no scores were given); ``union`` is the key-token mask used for training (by default the OR of
    ``selected``).
    """

    text: str
    start: int
    end: int
    selected: dict[str, bool] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    union: bool = False

    @property
    def signals(self) -> list[str]:
        """Names of the signals that selected this token, in the record's signal order."""
        return [name for name, chosen in self.selected.items() if chosen]


def _as_list(values: Any, what: str) -> list:
    """Plain list from a list/tuple or a 1-D tensor/array (anything with ``.tolist()``)."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    if not isinstance(values, list | tuple):
        raise TypeError(f"{what}: expected a list or a 1-D tensor, got {type(values).__name__}")
    return list(values)


def token_records(
    pieces: Sequence[str],
    masks: Mapping[str, Sequence[bool]],
    scores: Mapping[str, Sequence[float]] | None = None,
    union: Sequence[bool] | None = None,
) -> list[TokenRecord]:
    """Build one ``TokenRecord`` per token of a completion.

    pieces: (T,) decoded token pieces of the valid completion tokens (padding removed); offsets are cumulative
        lengths of the pieces, so ``"".join(pieces)`` is the text the offsets index.
    masks: signal name -> (T,) bool, selected by that signal (e.g. "visual", "temporal", "entropy").
    scores: optional signal name -> (T,) float score. Keys need not equal ``masks``' keys.
    union: optional (T,) bool key-token mask actually used for training; defaults to the OR of ``masks`` (pass it
        when selection used the intersection).
    Raises ValueError when a mask/score length differs from ``len(pieces)``.
    """
    pieces = [str(p) for p in _as_list(pieces, "pieces")]
    n = len(pieces)
    mask_lists = {name: [bool(v) for v in _as_list(m, f"mask '{name}'")] for name, m in masks.items()}
    score_lists = {
        name: [float(v) for v in _as_list(s, f"scores '{name}'")] for name, s in (scores or {}).items()
    }
    union_list = None if union is None else [bool(v) for v in _as_list(union, "union")]
    named = {
        **{f"mask '{k}'": v for k, v in mask_lists.items()},
        **{f"scores '{k}'": v for k, v in score_lists.items()},
    }
    if union_list is not None:
        named["union"] = union_list
    for what, values in named.items():
        if len(values) != n:
            raise ValueError(f"{what} has {len(values)} entries but there are {n} pieces; pass one per token")

    records, offset = [], 0
    for k, piece in enumerate(pieces):
        selected = {name: m[k] for name, m in mask_lists.items()}
        key = union_list[k] if union_list is not None else any(selected.values())
        records.append(
            TokenRecord(
                text=piece,
                start=offset,
                end=offset + len(piece),
                selected=selected,
                scores={name: s[k] for name, s in score_lists.items()},
                union=key,
            )
        )
        offset += len(piece)
    return records


def pieces_from_ids(tokenizer: Any, ids: Sequence[int], skip_special_tokens: bool = False) -> list[str]:
    """Decoded text piece of each token id, such that ``"".join(pieces) == tokenizer.decode(ids)``.

    tokenizer: a transformers tokenizer (or processor) with ``decode(ids, skip_special_tokens=...,
        clean_up_tokenization_spaces=...)``.
    ids: (T,) token ids of one completion (padding removed).
    Returns (T,) strings.

    Decoding each id alone is wrong for byte-level BPE (Qwen, GPT-2): a multi-byte character split over several
    tokens decodes to U+FFFD pieces, and SentencePiece-style decoders treat leading spaces differently at the start.
    So piece k is the difference between the decoded prefixes ``ids[:k+1]`` and ``ids[:k]``. While a prefix ends in
    an incomplete character (its decode ends with U+FFFD) the token's piece is "" and the character is attributed to
    the token that completes it; the last token takes whatever remains. Tokenization-space clean-up is disabled so
    that a later token never rewrites earlier text. Cost: T decodes of growing prefixes (O(T^2) characters), fine
    for analysis of completions of a few thousand tokens.
    Raises ValueError if a decoded prefix does not extend the previous one (a decoder this scheme cannot follow).
    """
    ids = [int(i) for i in _as_list(ids, "ids")]
    pieces, emitted = [], ""
    for k in range(len(ids)):
        text = tokenizer.decode(
            ids[: k + 1], skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False
        )
        is_last = k == len(ids) - 1
        if text.endswith(_REPLACEMENT_CHAR) and not is_last:
            pieces.append("")  # incomplete multi-byte character: wait for the token that completes it
            continue
        if not text.startswith(emitted):
            raise ValueError(
                f"decoding token {k} (id {ids[k]}) changed earlier text: {emitted!r} is not a prefix of {text!r}; "
                "this tokenizer's decoder is context dependent, so pieces cannot be attributed to tokens"
            )
        pieces.append(text[len(emitted) :])
        emitted = text
    return pieces


def _valid_part(rows: list, i: int, keep: list[int], what: str) -> list:
    """Row ``i`` of a (N, T) list/tensor, restricted to positions ``keep``."""
    row = _as_list(rows[i], f"{what}[{i}]")
    if len(row) <= max(keep, default=-1):
        raise ValueError(f"{what}[{i}] has {len(row)} positions but valid[{i}] marks position {max(keep)}")
    return [row[t] for t in keep]


def records_from_batch(
    tokenizer: Any,
    completion_ids: Any,
    valid: Any,
    masks: Mapping[str, Any],
    scores: Mapping[str, Any] | None = None,
    union: Any | None = None,
) -> list[list[TokenRecord]]:
    """Token records for every row of a batch of completions, keeping valid tokens only.

    completion_ids: (N, T) int; valid: (N, T) bool/int completion mask; masks: signal -> (N, T) bool;
    scores: optional signal -> (N, T) float; union: optional (N, T) bool key-token mask.
    Tensors or nested lists. Returns N lists of records (row i has ``valid[i].sum()`` records).
    """
    named: dict[str, list] = {"completion_ids": _as_list(completion_ids, "completion_ids")}
    named.update({f"mask '{k}'": _as_list(v, f"mask '{k}'") for k, v in masks.items()})
    named.update({f"scores '{k}'": _as_list(v, f"scores '{k}'") for k, v in (scores or {}).items()})
    if union is not None:
        named["union"] = _as_list(union, "union")
    valid_rows = _as_list(valid, "valid")
    for what, rows in named.items():
        if len(rows) != len(valid_rows):
            raise ValueError(f"{what} has {len(rows)} rows but valid has {len(valid_rows)}")
    out = []
    for i, row_valid in enumerate(valid_rows):
        keep = [t for t, v in enumerate(_as_list(row_valid, f"valid[{i}]")) if v]
        part = {what: _valid_part(rows, i, keep, what) for what, rows in named.items()}
        out.append(
            token_records(
                pieces_from_ids(tokenizer, part["completion_ids"]),
                {k: part[f"mask '{k}'"] for k in masks},
                {k: part[f"scores '{k}'"] for k in (scores or {})},
                part.get("union"),
            )
        )
    return out


def record_signals(records_list: Sequence[Sequence[TokenRecord]]) -> list[str]:
    """Signal names shared by all records (order of the first record); ValueError if records disagree."""
    names: list[str] | None = None
    for i, records in enumerate(records_list):
        for rec in records:
            these = list(rec.selected)
            if names is None:
                names = these
            elif set(these) != set(names):
                raise ValueError(
                    f"completion {i}: token at {rec.start} has signals {these}, others have {names}; "
                    "build all records with the same masks"
                )
    return names or []
