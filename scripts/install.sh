#!/usr/bin/env bash
# Installs resnext-det and what it needs, idempotently; prints the interpreter to use last.
#
# Where: the active virtual environment if there is one ($VIRTUAL_ENV), otherwise $RESNEXT_VENV
# (default .venv/ in the repository root; created here). Each step is skipped when what it
# installs is already there, so a re-run costs a few seconds.
#   1. torch/torchvision: any torch >= 2.1 already present is kept; otherwise torch==2.14.1 and
#      torchvision==0.29.1, resolved together with setuptools<81 because detectron2's model_zoo
#      (v0.6 and main) imports pkg_resources, which setuptools 81 removed.
#   2. detectron2:
#      - with DETECTRON2_SRC (a detectron2 source folder, a .tar.gz of one, or any pip-installable
#        spec such as git+https://github.com/facebookresearch/detectron2.git): that detectron2,
#        built with its compiled ops (CUDA ops where nvcc, a CUDA torch and a GPU are present, or
#        nvcc, a CUDA torch and TORCH_CUDA_ARCH_LIST on a machine without a GPU; CPU ops
#        otherwise), replacing any other detectron2 in the environment; kept on a re-run with the
#        same DETECTRON2_SRC (a file is compared by its sha256);
#      - without it: an existing install (an official build, or ours) is kept; otherwise a
#        pure-Python wheel built from PyPI's pb1-detectron2==0.6 sdist
#        (scripts/build_detectron2_wheel.py).
#      Either way it prints which detectron2 is installed and whether detectron2._C is present.
#   3. resnext-det itself, editable, with its test extras.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  py="$VIRTUAL_ENV/bin/python"
else
  venv="${RESNEXT_VENV:-.venv}"
  if [[ ! -x "$venv/bin/python" ]]; then
    host_py="${PYTHON:-python3}"
    "$host_py" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
      echo "install.sh: resnext-det needs Python >= 3.10; $host_py is $("$host_py" --version 2>&1). Set PYTHON=/path/to/python3.x" >&2
      exit 1
    }
    echo "install.sh: creating $venv with $("$host_py" --version 2>&1)" >&2
    "$host_py" -m venv "$venv"
  fi
  py="$(cd "$venv" && pwd)/bin/python"
fi
pip=("$py" -m pip --disable-pip-version-check)

if ! "$py" -c 'import sys, torch; v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(v < (2, 1))' 2>/dev/null; then
  echo "install.sh: installing torch==2.14.1 torchvision==0.29.1" >&2
  "${pip[@]}" install --quiet "torch==2.14.1" "torchvision==0.29.1" "setuptools>=77.0.3,<81"
fi

has_detectron2() { "$py" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("detectron2") is None)'; }
has_compiled_ops() { "$py" -c 'import detectron2._C' 2>/dev/null; }

if [[ -n "${DETECTRON2_SRC:-}" ]]; then
  src="$DETECTRON2_SRC"
  if [[ -d "$src" ]]; then
    src="$(cd "$src" && pwd)"
    [[ -f "$src/setup.py" ]] || { echo "install.sh: DETECTRON2_SRC=$DETECTRON2_SRC is a folder without setup.py; expected detectron2's source tree" >&2; exit 1; }
    identity="$src $(git -C "$src" rev-parse HEAD 2>/dev/null || echo no-git)"
  elif [[ -f "$src" ]]; then
    case "$src" in
      *.tar.gz|*.tgz|*.zip) ;;
      *) echo "install.sh: DETECTRON2_SRC=$DETECTRON2_SRC is a file, but not a .tar.gz, .tgz or .zip of detectron2's source" >&2; exit 1 ;;
    esac
    src="$(cd "$(dirname "$src")" && pwd)/$(basename "$src")"
    identity="$(sha256sum "$src" | cut -d' ' -f1)"
  elif [[ "$src" == */* && "$src" != *://* && "$src" != *@* ]]; then
    echo "install.sh: DETECTRON2_SRC=$DETECTRON2_SRC does not exist (expected a detectron2 source folder, a .tar.gz of one, or a pip spec)" >&2
    exit 1
  else
    identity="$src"  # a pip spec: git+https://..., a wheel index name, ...
  fi
  marker="$("$py" -c 'import sys; print(sys.prefix)')/.resnext-det-detectron2-src"
  if [[ "$(cat "$marker" 2>/dev/null)" != "$identity" ]] || ! has_compiled_ops; then
    if has_detectron2; then
      echo "install.sh: replacing the installed detectron2 with DETECTRON2_SRC" >&2
      "${pip[@]}" uninstall --quiet --yes detectron2
    fi
    build_env=()
    if command -v nvcc >/dev/null && "$py" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
      echo "install.sh: building detectron2 from $src with its CUDA and CPU ops" >&2
    elif command -v nvcc >/dev/null && [[ -n "${TORCH_CUDA_ARCH_LIST:-}" ]] \
         && "$py" -c 'import sys, torch; sys.exit(torch.version.cuda is None)'; then
      build_env=(FORCE_CUDA=1)  # no GPU visible here: CUDA ops for the architectures asked for
      echo "install.sh: building detectron2 from $src with its CPU ops and CUDA ops for $TORCH_CUDA_ARCH_LIST" >&2
    else
      echo "install.sh: building detectron2 from $src with its CPU ops only (no nvcc, or no GPU visible: TORCH_CUDA_ARCH_LIST with nvcc builds CUDA ops without one)" >&2
    fi
    env ${build_env[@]+"${build_env[@]}"} "${pip[@]}" install --quiet --no-build-isolation "$src" "setuptools>=77.0.3,<81"
    if ! has_compiled_ops; then
      echo "install.sh: detectron2 from DETECTRON2_SRC=$DETECTRON2_SRC was installed without its compiled ops (import detectron2._C fails):" >&2
      "$py" -c 'import detectron2._C' 2>&1 | tail -n 1 >&2
      exit 1
    fi
    echo "$identity" >"$marker"
  fi
elif ! has_detectron2; then
  echo "install.sh: building detectron2 0.6 (pure Python) from the pb1-detectron2 sdist" >&2
  wheel="$("$py" scripts/build_detectron2_wheel.py "$root/.cache/detectron2")"
  "${pip[@]}" install --quiet "$wheel" "setuptools>=77.0.3,<81"
fi
"$py" - >&2 <<'PY'
import importlib.metadata, os
import detectron2
try:
    from detectron2 import _C
    ops = "present, CUDA " + _C.get_cuda_version() if _C.has_cuda() else "present, CPU only"
except ImportError:
    ops = "absent (resnext_det.compat stands in for it)"
print(f"install.sh: detectron2 {importlib.metadata.version('detectron2')} in "
      f"{os.path.dirname(detectron2.__file__)}; compiled ops (detectron2._C): {ops}")
PY

if ! "$py" -c 'import importlib.metadata as m; m.version("resnext-det")' 2>/dev/null \
   || [[ setup.py -nt "$("$py" -c 'import sys; print(sys.prefix)')/.resnext-det-installed" ]]; then
  echo "install.sh: installing resnext-det (editable, with test extras)" >&2
  "${pip[@]}" install --quiet --no-build-isolation -e ".[test]"
  touch "$("$py" -c 'import sys; print(sys.prefix)')/.resnext-det-installed"
fi

echo "$py"
