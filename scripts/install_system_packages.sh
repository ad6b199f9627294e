#!/usr/bin/env bash
# Debian packages the migration uses at run time, installed when missing (as root, with apt):
# LibreOffice's soffice, which unstructured calls to convert .doc and .ppt uploads (Open WebUI's
# image has it too), and libmagic, which tells legacy Office files from OOXML ones. Without
# them those files fail with a reason naming the tool; everything else migrates.
set -euo pipefail

missing=()
command -v soffice >/dev/null 2>&1 || missing+=(libreoffice-writer libreoffice-impress)
ldconfig -p 2>/dev/null | grep -q 'libmagic\.so\.1' || missing+=(libmagic1)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: install ${missing[*]} (Debian/Ubuntu) to read .doc and .ppt uploads" >&2
    exit 0
fi
echo "installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
