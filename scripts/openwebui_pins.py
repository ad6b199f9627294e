"""Pin the libraries that shape our text to the versions Open WebUI's wheel pins.

Reads the `Requires-Dist` lines of open_webui-<version>.dist-info/METADATA (from a wheel given
with --wheel, else one `pip download`s into a cache directory), keeps a copy of them in
pins/open_webui-<version>-requires-dist.txt, and writes the exact pins of the libraries
pins/openwebui.toml lists into pyproject.toml, between "Open WebUI ... pins" markers in each
group's list. Usage:

    python scripts/openwebui_pins.py                      # the version pins/openwebui.toml names
    python scripts/openwebui_pins.py --open-webui-version 0.13.0   # follow a new release
    python scripts/openwebui_pins.py --wheel open_webui-0.12.4-py3-none-any.whl
    python scripts/openwebui_pins.py --committed --check  # no network: is pyproject up to date?

Then `make install`. pgvector_migration_tests/test_openwebui_pins.py checks pyproject.toml
against the committed copy with the functions below.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PINS_DIR = ROOT / "pins"
SELECTION_FILE = PINS_DIR / "openwebui.toml"
PYPROJECT_FILE = ROOT / "pyproject.toml"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "pgvector-migration" / "open-webui-wheels"
VERSION_LINE = re.compile(r'^open_webui_version = "[^"]*"$', re.MULTILINE)
BLOCK = re.compile(
    r"^[ \t]*# >>> Open WebUI \S+ pins \((?P<group>[\w-]+)\).*\n"
    r"(?:.*\n)*?"
    r"[ \t]*# <<< Open WebUI pins \((?P=group)\)\n",
    re.MULTILINE,
)
QUOTED_REQUIREMENT = re.compile(r'^[ \t]*"(?P<requirement>[^"]+)",?[ \t]*(?:#.*)?\n', re.MULTILINE)


class PinsError(Exception):
    """Open WebUI's metadata, pins/openwebui.toml and pyproject.toml do not fit together."""


@dataclass(frozen=True)
class Library:
    """A library whose version shapes our output, and the pyproject group its pin goes in."""

    name: str
    group: str


@dataclass(frozen=True)
class PinException:
    """Where we install `ours` instead of Open WebUI's `open_webui` requirement."""

    name: str
    open_webui: str
    ours: str


@dataclass(frozen=True)
class Selection:
    """pins/openwebui.toml: the release we reproduce, what we pin from it, and the exceptions."""

    open_webui_version: str
    libraries: tuple[Library, ...]
    exceptions: dict[str, PinException]


def parse_selection(text: str) -> Selection:
    """The Open WebUI version, the libraries to pin and the exceptions of pins/openwebui.toml."""
    data = tomllib.loads(text)
    exceptions = {
        canonicalize_name(entry["name"]): PinException(
            entry["name"], entry["open_webui"], entry["ours"]
        )
        for entry in data.get("exception", [])
    }
    libraries = tuple(Library(entry["name"], entry["group"]) for entry in data["library"])
    return Selection(data["open_webui_version"], libraries, exceptions)


def requires_dist_path(version: str) -> Path:
    """The committed copy the tests read instead of the wheel (they have no network)."""
    return PINS_DIR / f"open_webui-{version}-requires-dist.txt"


def read_requires_dist(path: Path) -> list[str]:
    """The requirement strings of a committed copy (comment lines skipped)."""
    prefix = "Requires-Dist:"
    return [
        line[len(prefix) :].strip()
        for line in path.read_text().splitlines()
        if line.startswith(prefix)
    ]


def wheel_requires_dist(wheel: Path, version: str) -> tuple[list[str], str]:
    """The `Requires-Dist` lines of the wheel's METADATA, and the METADATA copy's header."""
    metadata_name = f"open_webui-{version}.dist-info/METADATA"
    with zipfile.ZipFile(wheel) as archive:
        try:
            metadata = archive.read(metadata_name).decode()
        except KeyError as error:
            raise PinsError(
                f"{wheel} has no {metadata_name}: is it the open-webui {version} wheel?"
            ) from error
    requires = [
        line.strip() for line in HeaderParser().parsestr(metadata).get_all("Requires-Dist", [])
    ]
    if not requires:
        raise PinsError(f"{wheel}: {metadata_name} lists no Requires-Dist")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    header = (
        f"# Requires-Dist of {metadata_name} in {wheel.name} (sha256 {digest}),\n"
        "# copied by scripts/openwebui_pins.py; the pins in pyproject.toml are derived from it.\n"
    )
    return requires, header


def download_wheel(version: str, cache_dir: Path) -> Path:
    """The published wheel, fetched once with pip: its METADATA is what a pip install of that
    release resolves against, so it is the authority on Open WebUI's versions."""
    wheel = cache_dir / f"open_webui-{version}-py3-none-any.whl"
    if wheel.exists():
        return wheel
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--dest", str(cache_dir), f"open-webui=={version}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not wheel.exists():
        raise PinsError(
            f"pip could not download open-webui=={version} into {cache_dir} "
            f"(pass --wheel PATH to use a wheel at hand):\n{result.stderr.strip()}"
        )
    return wheel


def exact_pins(requires: list[str]) -> dict[str, Requirement]:
    """Every `name==version` requirement Open WebUI declares, base or in an extra, by name.

    A library pinned in two places (unstructured in both the `all` and `unstructured` extras)
    must be pinned to the same version in both.
    """
    pins: dict[str, Requirement] = {}
    for line in requires:
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            continue
        name = canonicalize_name(requirement.name)
        known = pins.get(name)
        if known is not None and known.specifier != requirement.specifier:
            raise PinsError(f"Open WebUI pins {name} twice: {known} and {requirement}")
        pins[name] = known or requirement
    return pins


def pinned_requirements(selection: Selection, requires: list[str]) -> dict[str, list[str]]:
    """The requirement strings to write, by pyproject group, sorted by name."""
    pins = exact_pins(requires)
    groups: dict[str, list[str]] = {}
    for library in selection.libraries:
        name = canonicalize_name(library.name)
        requirement = pins.get(name)
        if requirement is None:
            raise PinsError(
                f"Open WebUI {selection.open_webui_version} does not pin {library.name} "
                f"exactly; remove it from {SELECTION_FILE.name} or pin it by hand with a reason"
            )
        pinned = f"{requirement.name}{requirement.specifier}"
        exception = selection.exceptions.get(name)
        if exception is not None:
            if Requirement(exception.open_webui) != Requirement(pinned):
                raise PinsError(
                    f"Open WebUI {selection.open_webui_version} now pins {pinned}, not "
                    f"{exception.open_webui}: re-examine the exception for {library.name} in "
                    f"{SELECTION_FILE.name}"
                )
            pinned = exception.ours
        groups.setdefault(library.group, []).append(pinned)
    return {group: sorted(lines, key=str.lower) for group, lines in groups.items()}


def pyproject_drift(
    pyproject_text: str, selection: Selection, groups: dict[str, list[str]]
) -> list[str]:
    """How pyproject.toml's requirements of the pinned libraries differ from `groups`: each
    pinned library must be required exactly once, as pinned, in its own group and nowhere else,
    and a library an exception replaces must not be required at all."""
    project = tomllib.loads(pyproject_text)["project"]
    declared = {"dependencies": project.get("dependencies", [])}
    declared |= project.get("optional-dependencies", {})
    wanted = {
        canonicalize_name(Requirement(line).name): (group, line)
        for group, lines in groups.items()
        for line in lines
    }
    replaced = {
        canonicalize_name(Requirement(e.open_webui).name): e.ours
        for e in selection.exceptions.values()
    }
    found: dict[str, list[str]] = {name: [] for name in wanted.keys() | replaced.keys()}
    for group, lines in declared.items():
        for line in lines:
            name = canonicalize_name(Requirement(line).name)
            if name in found:
                found[name].append(f"{group}: {line}")
    problems = []
    for name, (group, line) in sorted(wanted.items()):
        if found[name] != [f"{group}: {line}"]:
            have = ", ".join(found[name]) or "nothing"
            problems.append(f"{name}: want {group}: {line}; pyproject.toml has {have}")
    for name, ours in sorted(replaced.items()):
        if found[name]:
            problems.append(
                f"{name}: replaced by {ours} (pins/openwebui.toml); "
                f"pyproject.toml has {', '.join(found[name])}"
            )
    return problems


def render_block(version: str, group: str, requirements: list[str], indent: str) -> str:
    lines = [
        f"{indent}# >>> Open WebUI {version} pins ({group}): "
        "scripts/openwebui_pins.py writes these",
        *(f'{indent}"{requirement}",' for requirement in requirements),
        f"{indent}# <<< Open WebUI pins ({group})",
    ]
    return "\n".join(lines) + "\n"


def pinned_names(selection: Selection) -> set[str]:
    names = {canonicalize_name(library.name) for library in selection.libraries}
    names |= {canonicalize_name(Requirement(e.ours).name) for e in selection.exceptions.values()}
    return names


def _drop_loose_requirements(text: str, names: set[str]) -> str:
    """Remove requirements of pinned libraries written outside the blocks."""

    def keep(match: re.Match[str]) -> str:
        try:
            requirement = Requirement(match["requirement"])
        except ValueError:
            return match[0]
        return "" if canonicalize_name(requirement.name) in names else match[0]

    return QUOTED_REQUIREMENT.sub(keep, text)


def _group_list_end(text: str, group: str) -> int:
    opening = re.search(rf"^{re.escape(group)} = \[\n", text, re.MULTILINE)
    if opening is None:
        raise PinsError(f"pyproject.toml has no `{group} = [` list to put the pins in")
    closing = re.compile(r"^\]\n", re.MULTILINE).search(text, opening.end())
    if closing is None:
        raise PinsError(f"pyproject.toml: the `{group}` list is not closed by a `]` line")
    return closing.start()


def rewrite_pyproject(text: str, selection: Selection, groups: dict[str, list[str]]) -> str:
    """pyproject.toml's text with every group's block rendered anew, added at the end of the
    group's list when missing, and no other requirement naming a pinned library."""
    blocks = {match["group"]: match for match in BLOCK.finditer(text)}
    outside = BLOCK.sub(lambda match: f"\0{match['group']}\0", text)
    outside = _drop_loose_requirements(outside, pinned_names(selection))
    for group in blocks.keys() - groups.keys():
        outside = outside.replace(f"\0{group}\0", "")
    for group, requirements in groups.items():
        block = render_block(selection.open_webui_version, group, requirements, "    ")
        if group in blocks:
            outside = outside.replace(f"\0{group}\0", block)
        else:
            end = _group_list_end(outside, group)
            outside = outside[:end] + block + outside[end:]
    return outside


def planned_files(args: argparse.Namespace) -> dict[Path, str | None]:
    """Every file the run would write (its new text) or remove (None), computed before any is
    touched, so that a refusal leaves the checkout as it was."""
    selection_text = SELECTION_FILE.read_text()
    if args.open_webui_version:
        selection_text = VERSION_LINE.sub(
            f'open_webui_version = "{args.open_webui_version}"', selection_text
        )
    selection = parse_selection(selection_text)
    version = selection.open_webui_version
    copy_path = requires_dist_path(version)
    files: dict[Path, str | None] = {SELECTION_FILE: selection_text}
    if args.committed:
        requires = read_requires_dist(copy_path)
    else:
        wheel = args.wheel or download_wheel(version, args.cache_dir)
        requires, header = wheel_requires_dist(wheel, version)
        for stale in PINS_DIR.glob("open_webui-*-requires-dist.txt"):
            files[stale] = None
        files[copy_path] = header + "".join(f"Requires-Dist: {line}\n" for line in requires)
    groups = pinned_requirements(selection, requires)
    files[PYPROJECT_FILE] = rewrite_pyproject(PYPROJECT_FILE.read_text(), selection, groups)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--open-webui-version", help="follow this release (rewrites the TOML)")
    parser.add_argument("--wheel", type=Path, help="the open-webui wheel (default: pip download)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument(
        "--committed",
        action="store_true",
        help="use the committed Requires-Dist copy instead of a wheel (no network)",
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    try:
        files = planned_files(args)
    except PinsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    changed = [
        path
        for path, text in files.items()
        if (path.read_text() if path.exists() else None) != text
    ]
    for path in changed:
        print(f"{'stale' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
        if args.check:
            continue
        if files[path] is None:
            path.unlink()
        else:
            path.write_text(files[path])
    if args.check and changed:
        print("run scripts/openwebui_pins.py to bring them up to date", file=sys.stderr)
        return 1
    if changed and not args.check:
        print("now run `make install` and the golden tests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
