#!/usr/bin/env bash
# One Video-KTR step with vLLM video rollouts on one GPU, and its rollout tokens/s against transformers generate.
#
#   bash benchmarks/gpu_smoke.sh [MODEL] [OUT]        # MODEL default Qwen/Qwen2.5-VL-3B-Instruct, OUT runs/gpu_smoke
#
# NOT RUN: written on a machine without a GPU (docs/vllm.md says what was tested on CPU instead). Needs one NVIDIA
# GPU (>= 40 GB for the 3B default: the policy, its optimiser states and the colocated vLLM engine at 35%) and
# network access to PyPI and the model hub. Installs the `vllm` extra (vllm==0.33.0, which brings torch==2.14.0 and
# transformers 5.20.x) into the current Python environment: use a fresh virtualenv.
set -euo pipefail
MODEL=${1:-Qwen/Qwen2.5-VL-3B-Instruct}
OUT=${2:-runs/gpu_smoke}
cd "$(dirname "$0")/.."

if ! nvidia-smi -L; then
    echo "gpu_smoke: no NVIDIA GPU visible (nvidia-smi failed); this smoke test needs one" >&2
    exit 2
fi
python -m pip install -e '.[vllm]'
python - <<'PY'
import sys
from videoktr.vllm.install import vllm_problem
problem = vllm_problem()
if problem:
    sys.exit(f"gpu_smoke: {problem}")
PY
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
python benchmarks/vllm_rollout.py --model "$MODEL" --out "$OUT"
