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
# chromium: tests/analysis/test_report_browser.py renders the demo report in a real headless browser. Installed
# when missing and apt-get can (root); otherwise that test is skipped and says why.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
  apt_install 2>/dev/null || { apt-get update -qq >/dev/null && apt_install; } \
    || echo "setup: could not install chromium; the report's browser test will be skipped" >&2
fi
.venv/bin/videoktr env
