#!/usr/bin/env bash
# Installs resnext-det and what it needs, idempotently; prints the interpreter to use last.
#
# Where: the active virtual environment if there is one ($VIRTUAL_ENV), otherwise .venv/ in the
# repository root (created here). Each step is skipped when what it installs is already there, so
# a re-run costs a few seconds.
#   1. torch/torchvision: any torch >= 2.1 already present is kept; otherwise torch==2.14.1 and
#      torchvision==0.29.1, resolved together with setuptools<81 because detectron2 0.6's
#      model_zoo imports pkg_resources, which setuptools 81 removed.
#   2. detectron2: an existing install (an official build, or ours) is kept; otherwise a
#      pure-Python wheel built from PyPI's pb1-detectron2==0.6 sdist (scripts/build_detectron2_wheel.py).
#   3. resnext-det itself, editable, with its test extras.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  py="$VIRTUAL_ENV/bin/python"
else
  if [[ ! -x .venv/bin/python ]]; then
    host_py="${PYTHON:-python3}"
    "$host_py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
      echo "install.sh: resnext-det needs Python >= 3.10; $host_py is $("$host_py" --version 2>&1). Set PYTHON=/path/to/python3.x" >&2
      exit 1
    }
    echo "install.sh: creating .venv with $("$host_py" --version 2>&1)" >&2
    "$host_py" -m venv .venv
  fi
  py="$root/.venv/bin/python"
fi
pip=("$py" -m pip --disable-pip-version-check)

if ! "$py" -c 'import sys, torch; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(v < (2, 1))' 2>/dev/null; then
  echo "install.sh: installing torch==2.14.1 torchvision==0.29.1" >&2
  "${pip[@]}" install --quiet "torch==2.14.1" "torchvision==0.29.1" "setuptools>=77.0.3,<81"
fi

if ! "$py" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("detectron2") is None)'; then
  echo "install.sh: building detectron2 0.6 (pure Python) from the pb1-detectron2 sdist" >&2
  wheel="$("$py" scripts/build_detectron2_wheel.py "$root/.cache/detectron2")"
  "${pip[@]}" install --quiet "$wheel" "setuptools>=77.0.3,<81"
fi

if ! "$py" -c 'import importlib.metadata as m; m.version("resnext-det")' 2>/dev/null \
   || [[ setup.py -nt "$("$py" -c 'import sys; print(sys.prefix)')/.resnext-det-installed" ]]; then
  echo "install.sh: installing resnext-det (editable, with test extras)" >&2
  "${pip[@]}" install --quiet --no-build-isolation -e ".[test]"
  touch "$("$py" -c 'import sys; print(sys.prefix)')/.resnext-det-installed"
fi

echo "$py"
