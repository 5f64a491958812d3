#!/usr/bin/env bash
# Create .venv and install videoktr with its test tools, from this repository's files only.
# torch/torchvision: this machine's pip takes the 2.14.1 / 0.29.1 files on disk (pinned in pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
.venv/bin/videoktr env
