"""What makes two evaluation runs the same run, so a predictions file never mixes two of them.

The first line of a predictions JSONL written by videoktr is a header ``{"videoktr_eval_run": {...}}`` holding the
run's identity: ``settings`` (compared on resume: the model's config/weights hashes, benchmark, data file hash,
frames/fps, pixels, template, generation/sampling, backend) and ``recorded`` (kept for the reader, not compared: the
paths, so a moved model or data file still resumes). Resuming into a file whose settings differ is refused with the
differing fields named; a file with prediction lines but no header (another tool, an older videoktr) is refused too.

Every prediction line is written whole with its newline; a last line without one (the process was killed mid-write)
or that does not parse is dropped with a warning, cut from the file, and its item is generated again.

:func:`eval_run_settings` builds the settings of ``videoktr eval`` from a plain mapping, so a new setting (a
scorer, a sampling parameter) is one more key: ``RunIdentity(eval_run_settings(...) | {"scorer": name})``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from videoktr.errors import UserError

logger = logging.getLogger(__name__)

HEADER_KEY = "videoktr_eval_run"
# the files of a model directory that decide its outputs: weights, and config / tokenizer / processor / adapter files
# (training state - optimizer, scheduler, RNG, logs - is left out)
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_CONFIG_PATTERNS = ("*config*.json", "*token*", "vocab*", "merges*", "chat_template*")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (every byte is read once: the time grows with the weights' size)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _digest_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(f"{path.name}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def model_fingerprint(model_dir: str | Path) -> dict[str, str]:
    """``config_sha256`` (config, generation, tokenizer, processor and adapter files) and ``weights_sha256``
    (``*.safetensors`` / ``*.bin``) of a model directory; optimizer/scheduler/trainer state and logs are ignored.
    Raises :class:`UserError` if ``model_dir`` is not a directory."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"model {model_dir} is not a directory; pass a local checkpoint folder with --model")
    files = [p for p in model_dir.iterdir() if p.is_file()]
    weights = [p for p in files if p.name.endswith(_WEIGHT_SUFFIXES) and p.name != "training_args.bin"]
    configs = [p for p in files if any(fnmatch(p.name, pattern) for pattern in _CONFIG_PATTERNS)]
    return {"config_sha256": _digest_files(configs), "weights_sha256": _digest_files(weights)}


def _plain(value: Any) -> Any:
    """JSON-ready copy: dataclasses as dicts, paths as strings, tuples as lists."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True)
class RunIdentity:
    """``settings``: compared on resume (any JSON-able values; nested mappings compared key by key);
    ``recorded``: written to the header for the reader, never compared."""

    settings: Mapping[str, Any]
    recorded: Mapping[str, Any] = field(default_factory=dict)

    def header(self) -> dict[str, Any]:
        settings = _plain(self.settings)
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        return {HEADER_KEY: {"key": key, "settings": settings, "recorded": _plain(self.recorded)}}

    def differences(self, stored: Mapping[str, Any]) -> list[str]:
        """``field: stored -> now`` for every setting that differs from ``stored`` (a header's settings)."""
        return _diff(stored, _plain(self.settings), "")


def _diff(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            out += _diff(old.get(key, "<absent>"), new.get(key, "<absent>"), name)
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def eval_run_settings(
    *,
    model_dir: str | Path,
    bench: str,
    data: str | Path,
    sampling: Any,
    generation: Any,
    template: str,
    **extra: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, recorded) of an evaluation: the model's hashes, the benchmark, the data file's hash, the video
    sampling (frames/fps/pixels), generation settings, template, plus ``extra`` keys (backend, scorer...)."""
    data = Path(data)
    settings = {
        "model": model_fingerprint(model_dir),
        "bench": bench,
        "data_sha256": file_sha256(data),
        "sampling": _plain(sampling),
        "generation": _plain(generation),
        "template": template,
        **_plain(extra),
    }
    recorded = {"model_path": str(Path(model_dir).resolve()), "data_path": str(data.resolve())}
    return settings, recorded


def _split_lines(path: Path) -> tuple[list[tuple[int, str]], int | None]:
    """Complete lines as (line number, text) and, if the last line is torn, the byte offset where it starts."""
    raw = path.read_bytes()
    lines, offset, number = [], 0, 0
    while offset < len(raw):
        end = raw.find(b"\n", offset)
        number += 1
        text = raw[offset : end if end != -1 else len(raw)].decode("utf-8", errors="replace")
        if end == -1:  # written without its newline: cut off mid-write
            return lines, offset
        if text.strip():
            try:
                json.loads(text)
            except json.JSONDecodeError:
                if raw[end + 1 :].strip():
                    raise UserError(
                        f"{path}:{number}: not valid JSON, and not the last line (not a cut-off write); "
                        "repair or delete that line, or start a new file with another --predictions"
                    ) from None
                return lines, offset
            lines.append((number, text))
        offset = end + 1
    return lines, None


def open_predictions(path: Path, identity: RunIdentity) -> None:
    """Prepare ``path`` for this run: create it with the header, or check that its header matches ``identity``
    (refusing with the differences otherwise) and drop a torn last line. Prediction lines are left to the caller."""
    if not path.exists() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(identity.header(), ensure_ascii=False) + "\n", encoding="utf-8")
        return
    lines, torn_at = _split_lines(path)
    if torn_at is not None:
        logger.warning(
            "%s: the last line was cut off mid-write (%d bytes); dropping it, its item is generated again",
            path, path.stat().st_size - torn_at,
        )  # fmt: skip
        with path.open("r+b") as handle:
            handle.truncate(torn_at)
    first = json.loads(lines[0][1]) if lines else None
    if not lines:  # only a torn header: start the file again
        path.write_text(json.dumps(identity.header(), ensure_ascii=False) + "\n", encoding="utf-8")
        return
    start_new = "start a new file with another --predictions path (or delete this one to redo it)"
    if not isinstance(first, dict) or HEADER_KEY not in first:
        raise UserError(
            f"{path} has predictions but no videoktr run header (written by another tool or an older videoktr), "
            f"so they cannot be checked to come from this model and settings; {start_new}"
        )
    changed = identity.differences(first[HEADER_KEY].get("settings", {}))
    if changed:
        listing = "\n".join(f"  {line}" for line in changed)
        raise UserError(
            f"{path} holds predictions of another run; resuming would mix them. Settings that differ:\n"
            f"{listing}\n{start_new}"
        )


def is_header(row: Any) -> bool:
    """True for the run header line of a predictions file."""
    return isinstance(row, dict) and HEADER_KEY in row
