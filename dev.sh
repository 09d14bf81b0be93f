#!/usr/bin/env bash
# Set-up and everyday commands on a fresh machine (Python >= 3.10, pip, a C compiler).
#   ./dev.sh demo [ARGS]   install into .venv if needed, then run `qalign demo` (the whole loop)
#   ./dev.sh test [ARGS]   install into .venv if needed, then run the test suite
#   ./dev.sh lint          ruff (lint and format check) and mypy, as CI runs them
#   ./dev.sh install       only create/refresh .venv
#   ./dev.sh lock          write constraints.txt from .venv (after a dependency change, once tests pass)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${QALIGN_VENV:-.venv}
# CPU build of PyTorch: an unpinned torch would pull a multi-GB CUDA build. Override on GPU machines.
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

install() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.qalign-installed"
  local want
  want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)-$TORCH_SPEC
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # torch first, pinned, so nothing below can pull another build.
    "$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
    # The other packages at the versions the tests last passed with (constraints.txt).
    "$VENV/bin/python" -m pip install -q -c constraints.txt "$TORCH_SPEC" -e ".[test,lint]"
    echo "$want" > "$stamp"
  fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
  install) install ;;
  demo) install; exec "$VENV/bin/qalign" demo "$@" ;;
  test) install; exec "$VENV/bin/python" -m pytest -q "$@" ;;
  lint)
    install
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"
    ;;
  lock)
    install
    {
      sed -n '1,3p' constraints.txt
      "$VENV/bin/python" -m pip freeze --exclude-editable | grep -v -iE '^(torch|qalign-toolkit)==' | sort -f
    } > constraints.txt.new
    mv constraints.txt.new constraints.txt
    ;;
  *) sed -n '2,8p' "$0"; exit 1 ;;
esac
