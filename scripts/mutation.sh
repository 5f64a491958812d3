#!/usr/bin/env bash
# Mutation testing with mutmut 3 (docs/testing.md), one module at a time, each against its own test directory.
#   pip install -e ".[mutation]"          # once; CI never installs or runs this
#   scripts/mutation.sh core rewards      # modules: core rewards eval/scoring training/setup training/rollout
#                                         # (training = both halves; no argument = all)
# Each module runs in a scratch copy under .mutmut/<module>/ (src/ and tests/ are symlinks to this tree, the
# pyproject.toml is this one plus the module's only_mutate and test selection), so results are kept per module and
# a rerun only retests what changed. Survivors: `cd .mutmut/<module> && mutmut results`, `mutmut show <name>`.
# Env: MUTMUT_CHILDREN (parallel workers, default 2), PYTHON (default .venv/bin/python, else /work/main's venv),
# RETEST=1: rerun only the mutants that survived the last run (and new ones) (mutmut keeps earlier verdicts otherwise), e.g. after
# adding tests that should kill them. FALLBACK=0: skip the slow reruns of "no tests" mutants (about 40 s each
# for the gloo tests on a loaded machine).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
unset PYTHONPATH  # mutmut puts its mutated copy of src/ first on sys.path; nothing else may shadow it
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=/work/main/.venv/bin/python
"$PYTHON" -c "import mutmut" 2>/dev/null || {
  echo "mutmut is not installed for $PYTHON: pip install -e '.[mutation]'" >&2; exit 2; }

# module -> files to mutate (fnmatch patterns, relative to the scratch dir) | the tests that judge them | tests for
# the mutants mutmut finds no test for (its coverage misses code run in subprocesses, e.g. the gloo workers of
# tests/core/test_selection_distributed.py): each such mutant is rerun against them with MUTANT_UNDER_TEST set.
# training/setup: the options, recipes, data and checkpoint code; training/rollout: the rollout, selection, bonus and
# loss wiring. mutmut runs, per mutant, only the selected tests that reach the mutated function, so the selection
# lists the fast tests that judge each file (tiny-model runs only where nothing cheaper can).
spec() {
  case "$1" in
    core)         echo 'src/videoktr/core/*.py|tests/core|tests/core/test_selection_distributed.py' ;;
    rewards)      echo 'src/videoktr/rewards/*.py|tests/rewards' ;;
    eval/scoring) echo 'src/videoktr/eval/scoring.py src/videoktr/eval/scorers/*.py|tests/eval/test_scoring.py tests/eval/test_scorers.py tests/eval/test_scorers_mutants.py' ;;
    # training is run in two halves (the set-up code, the rollout/loss wiring); `training` runs both.
    training/setup)   echo 'src/videoktr/training/config.py src/videoktr/training/recipe.py src/videoktr/training/data.py src/videoktr/training/checkpoint.py src/videoktr/training/callbacks.py src/videoktr/training/commands.py src/videoktr/training/sft.py|tests/training/test_config.py tests/training/test_config_mutants.py tests/training/test_recipe.py tests/training/test_recipe_mutants.py tests/training/test_data.py tests/training/test_checkpoint_mutants.py tests/training/test_setup_mutants.py tests/training/test_resume.py::test_newest_complete_checkpoint_is_chosen_and_incomplete_ones_named tests/training/test_resume.py::test_resume_without_any_checkpoint_is_a_user_error tests/training/test_resume.py::test_checkpoint_of_another_model_is_refused tests/training/test_resume.py::test_saved_keys_are_renamed_to_the_model_layout' ;;
    training/rollout) echo 'src/videoktr/training/selection.py src/videoktr/training/bonuses.py src/videoktr/training/rollout.py src/videoktr/training/generation_scores.py src/videoktr/training/trainer.py src/videoktr/training/vllm_rollout.py|tests/training/test_selection_mutants.py tests/training/test_bonuses_mutants.py tests/training/test_rollout_mutants.py tests/training/test_generation_scores.py tests/training/test_trainer_mutants.py tests/training/test_vllm_rollout_mutants.py' ;;
    *) echo "unknown module '$1'; choose from: core rewards eval/scoring training/setup training/rollout (training = both)" >&2; return 2 ;;
  esac
}

MODULES=()
for m in "${@:-core rewards eval/scoring training}"; do
  for m2 in $m; do
    if [ "$m2" = training ]; then MODULES+=(training/setup training/rollout); else MODULES+=("$m2"); fi
  done
done
for module in "${MODULES[@]}"; do
  IFS='|' read -r mutate tests fallback <<<"$(spec "$module")"
  work=$ROOT/.mutmut/${module//\//_}
  mkdir -p "$work"
  ln -sfn "$ROOT/src" "$work/src"
  ln -sfn "$ROOT/tests" "$work/tests"
  "$PYTHON" - "$ROOT/pyproject.toml" "$work/pyproject.toml" "$mutate" "$tests" <<'EOF'
import json, re, sys, tomllib
src, dst, mutate, tests = sys.argv[1:]
text = open(src).read()
base = tomllib.loads(text)["tool"]["mutmut"]
base["only_mutate"] = mutate.split()
base["pytest_add_cli_args_test_selection"] = tests.split()
# Drop [tool.mutmut] from the copy and write it back with the module's settings (JSON lists are TOML arrays).
text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text)
text += "\n[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in base.items())
open(dst, "w").write(text)
EOF
  echo "== $module: mutating [$mutate] against [$tests] in $work"
  start=$(date +%s)
  names=()
  if [ "${RETEST:-0}" = 1 ]; then
    mapfile -t names < <(cd "$work" && "$PYTHON" -m mutmut results 2>/dev/null | awk -F: '/: (survived|not checked|no tests)$/ {gsub(/ /, "", $1); print $1}')
    echo "== $module: retesting ${#names[@]} survivors"
  fi
  (cd "$work" && "$PYTHON" -m mutmut run --max-children "${MUTMUT_CHILDREN:-2}" "${names[@]}") || true
  results=$(cd "$work" && "$PYTHON" -m mutmut results 2>/dev/null || true)
  if [ -n "${fallback:-}" ] && [ "${FALLBACK:-1}" = 1 ]; then
    for name in $(awk -F: '/: no tests$/ {gsub(/ /, "", $1); print $1}' <<<"$results"); do
      if (cd "$work/mutants" && MUTANT_UNDER_TEST=$name PYTHONPATH=$work/mutants/src \
          "$PYTHON" -m pytest -x -p no:cacheprovider $fallback >/dev/null 2>&1); then
        echo "    $name: survived ($fallback)"
      else
        echo "    $name: killed ($fallback)"
      fi
    done
  fi
  echo "== $module: wall time $(( $(date +%s) - start )) s"
  grep -v ': killed$' <<<"$results" || true
done
