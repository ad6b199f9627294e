#!/usr/bin/env bash
# Installs the CPU build of the torch version pyproject.toml pins, before the project itself, on
# Linux x86_64: there PyPI's torch wheel is the CUDA build, which pulls several GB of nvidia-*
# packages the migration never uses (it embeds on the CPU, as Open WebUI does by default).
#
#   scripts/install_torch_cpu.sh [PYTHON]    (PYTHON: the venv's interpreter, default .venv/bin/python)
#
# The `+cpu` wheel comes from pip's own configuration when that carries one (a mirror or a
# find-links folder), else from PyTorch's CPU index, TORCH_CPU_INDEX (set it empty to let pip
# take PyPI's CUDA build). Elsewhere (macOS on Apple silicon, Linux aarch64) PyPI's wheel is
# already CPU-only and nothing is done here.
set -euo pipefail

PYTHON=${1:-.venv/bin/python}
INDEX=${TORCH_CPU_INDEX-https://download.pytorch.org/whl/cpu}
version=$(sed -n 's/^ *"torch==\([^"]*\)".*/\1/p' pyproject.toml)
[ -n "$version" ] || { echo "install_torch_cpu: no torch pin in pyproject.toml" >&2; exit 1; }

[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || exit 0
if [ -z "$INDEX" ]; then
	echo "== TORCH_CPU_INDEX is empty: pip takes PyPI's torch $version (the CUDA build)"
	exit 0
fi
if "$PYTHON" -c "import sys, torch; sys.exit(torch.__version__ != '$version+cpu')" 2>/dev/null; then
	exit 0
fi
echo "== installing torch $version's CPU build (about 0.2 GB; PyPI's CUDA build is several GB)"
"$PYTHON" -m pip install --quiet "torch==$version+cpu" 2>/dev/null ||
	"$PYTHON" -m pip install --quiet --extra-index-url "$INDEX" "torch==$version+cpu"
