"""Video-R1 data: record schema and validation, PyAV decoding and frame sampling, the prompt template, synthetic
video tasks.

Names are imported lazily (``from videoktr.data import decode_video`` works) so that importing
``videoktr.data.commands`` for ``videoktr --help`` does not load torch or PyAV.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "VideoSamplingConfig": "video",
    "DecodedVideo": "video",
    "VideoDecodeError": "video",
    "decode_video": "video",
    "write_video": "video",
    "load_records": "schema",
    "validate_record": "schema",
    "validate_dataset": "schema",
    "DataReport": "schema",
    "build_question": "prompts",
    "PROMPT_TEMPLATES": "prompts",
    "make_synthetic": "synthetic",
    "synthetic_corpus": "synthetic",
    "label_evidence_words": "synthetic",
    "EVIDENCE_LEXICON": "synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'videoktr.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"videoktr.data.{_EXPORTS[name]}"), name)
