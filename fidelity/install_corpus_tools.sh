#!/usr/bin/env bash
# Debian's tools that make the fidelity corpus: pdfTeX (through pandoc), LibreOffice (PDF,
# docx, xlsx, pptx), groff and Ghostscript (man page PDFs), poppler and img2pdf (a scanned
# page), docutils (rst2html). Skips what is already installed.
set -euo pipefail

declare -A PACKAGE_OF=(
    [pandoc]=pandoc [pdflatex]="texlive-latex-base texlive-latex-recommended lmodern"
    [soffice]="libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui"
    [gropdf]=groff [ps2pdf]=ghostscript [pdftoppm]=poppler-utils [img2pdf]=img2pdf
    [rst2html]=python3-docutils
)
missing=()
for tool in "${!PACKAGE_OF[@]}"; do
    command -v "$tool" >/dev/null || missing+=(${PACKAGE_OF[$tool]})
done
# pandoc's LaTeX template loads lmodern.sty, which texlive-latex-base does not carry.
kpsewhich lmodern.sty >/dev/null 2>&1 || missing+=(lmodern)
if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
        || { apt-get update >/dev/null \
             && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
fi
