"""The libraries that shape our text are pinned to Open WebUI 0.12.4's versions.

The pins come from the committed copy of the wheel's `Requires-Dist` lines
(pins/open_webui-<version>-requires-dist.txt) and the selection in pins/openwebui.toml, through
scripts/openwebui_pins.py; these tests fail when pyproject.toml, or the installed environment,
drifts from them. No network: a new release is simulated with a wheel built here.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "openwebui_pins.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("openwebui_pins", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


pins = _load_script()
SELECTION = pins.parse_selection(pins.SELECTION_FILE.read_text())
REQUIRES = pins.read_requires_dist(pins.requires_dist_path(SELECTION.open_webui_version))
GROUPS = pins.pinned_requirements(SELECTION, REQUIRES)
PYPROJECT = (ROOT / "pyproject.toml").read_text()


def _pin(name: str) -> str:
    return next(line for lines in GROUPS.values() for line in lines if line.startswith(name + "="))


def test_committed_metadata_is_open_webuis():
    assert SELECTION.open_webui_version == "0.12.4"
    header = pins.requires_dist_path("0.12.4").read_text().splitlines()[0]
    assert "open_webui-0.12.4-py3-none-any.whl (sha256 02e9caba96234db3" in header
    assert "pypdf==6.21.2" in REQUIRES
    assert "unstructured==0.22.31; extra == 'unstructured'" in REQUIRES


def test_pyproject_requires_exactly_open_webuis_versions():
    assert pins.pyproject_drift(PYPROJECT, SELECTION, GROUPS) == []
    assert _pin("pypdf") == "pypdf==6.21.2"
    assert _pin("beautifulsoup4") == "beautifulsoup4==4.14.3"
    assert _pin("chardet") == "chardet==7.4.3"
    assert _pin("langchain-text-splitters") == "langchain-text-splitters==1.1.2"
    assert _pin("rapidocr") == "rapidocr==3.10.0"
    assert GROUPS["chroma"] == ["chromadb==1.5.9"]


def test_every_library_we_import_for_text_is_pinned():
    imported = {
        "pypdf",
        "beautifulsoup4",
        "lxml",
        "chardet",
        "docx2txt",
        "ftfy",
        "langchain-core",
        "langchain-text-splitters",
        "tiktoken",
        "unstructured",
        "pypandoc-binary",
        "rapidocr",
    }
    pinned = {Requirement(line).name for lines in GROUPS.values() for line in lines}
    assert imported <= pinned


def test_pyproject_is_what_the_script_writes():
    assert pins.rewrite_pyproject(PYPROJECT, SELECTION, GROUPS) == PYPROJECT


@pytest.mark.parametrize(
    ("old", "new", "problems"),
    [
        (
            "pypdf==6.21.2",
            "pypdf==7.1.1",
            [
                "pypdf: want dependencies: pypdf==6.21.2; "
                "pyproject.toml has dependencies: pypdf==7.1.1"
            ],
        ),
        (
            '"pytest>=8",',
            '"pytest>=8",\n    "beautifulsoup4>=4.12",',
            [
                "beautifulsoup4: want dependencies: beautifulsoup4==4.14.3; pyproject.toml has "
                "dependencies: beautifulsoup4==4.14.3, dev: beautifulsoup4>=4.12"
            ],
        ),
        (
            '    "chromadb==1.5.9",\n',
            "",
            ["chromadb: want chroma: chromadb==1.5.9; pyproject.toml has nothing"],
        ),
        (
            "pypandoc-binary==1.17",
            "pypandoc==1.17",
            [
                "pypandoc-binary: want dependencies: pypandoc-binary==1.17; "
                "pyproject.toml has nothing",
                "pypandoc: replaced by pypandoc-binary==1.17 (pins/openwebui.toml); "
                "pyproject.toml has dependencies: pypandoc==1.17",
            ],
        ),
    ],
)
def test_drift_is_reported(old, new, problems):
    assert old in PYPROJECT
    drifted = PYPROJECT.replace(old, new, 1)
    assert pins.pyproject_drift(drifted, SELECTION, GROUPS) == problems


def test_the_one_exception_is_the_documented_one():
    assert {name: (e.open_webui, e.ours) for name, e in SELECTION.exceptions.items()} == {
        "pypandoc": ("pypandoc==1.17", "pypandoc-binary==1.17")
    }
    assert "pypandoc==1.17" in REQUIRES
    moved_on = [line.replace("pypandoc==1.17", "pypandoc==1.18") for line in REQUIRES]
    with pytest.raises(pins.PinsError, match="re-examine the exception for pypandoc"):
        pins.pinned_requirements(SELECTION, moved_on)


def test_installed_versions_are_the_pins():
    """`make install` installs pyproject.toml, so the tests run under Open WebUI's versions."""
    stale = {}
    for lines in GROUPS.values():
        for line in lines:
            requirement = Requirement(line)
            installed = importlib.metadata.version(requirement.name)
            if installed not in requirement.specifier:
                stale[requirement.name] = installed
    assert stale == {}, f"installed versions differ from the pins, run `make install`: {stale}"


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of what the script reads and writes, so it can run for real."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts")
    shutil.copytree(ROOT / "pins", tmp_path / "pins")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _run(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(checkout / "scripts" / "openwebui_pins.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=checkout)


def test_script_check_passes_on_the_committed_files_and_repairs_drift(checkout):
    assert _run(checkout, "--committed", "--check").returncode == 0
    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text()
        .replace("pypdf==6.21.2", "pypdf==7.1.1")
        .replace('"tqdm>=4.66",', '"tqdm>=4.66",\n    "ftfy>=6.2",')
    )
    stale = _run(checkout, "--committed", "--check")
    assert (stale.returncode, stale.stdout) == (1, "stale: pyproject.toml\n")
    assert _run(checkout, "--committed").returncode == 0
    assert pyproject.read_text() == PYPROJECT


def _wheel(directory: Path, version: str, requires: list[str]) -> Path:
    wheel = directory / f"open_webui-{version}-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.4\nName: open-webui\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {line}\n" for line in requires)
    metadata += "\nOpen WebUI's description, which mentions Requires-Dist: nothing.\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"open_webui-{version}.dist-info/METADATA", metadata)
    return wheel


def test_following_a_new_release(checkout, tmp_path_factory):
    requires = [line.replace("pypdf==6.21.2", "pypdf==7.0.0") for line in REQUIRES]
    wheel = _wheel(tmp_path_factory.mktemp("wheel"), "0.13.0", requires)
    result = _run(checkout, "--open-webui-version", "0.13.0", "--wheel", str(wheel))
    assert result.returncode == 0, result.stderr
    assert 'open_webui_version = "0.13.0"' in (checkout / "pins" / "openwebui.toml").read_text()
    assert sorted(p.name for p in (checkout / "pins").glob("*-requires-dist.txt")) == [
        "open_webui-0.13.0-requires-dist.txt"
    ]
    assert pins.read_requires_dist(checkout / "pins" / "open_webui-0.13.0-requires-dist.txt") == (
        requires
    )
    pyproject = (checkout / "pyproject.toml").read_text()
    assert "# >>> Open WebUI 0.13.0 pins (dependencies)" in pyproject
    assert '"pypdf==7.0.0",' in pyproject and "pypdf==6.21.2" not in pyproject
    back = pyproject.replace("Open WebUI 0.13.0 pins", "Open WebUI 0.12.4 pins")
    assert back.replace('"pypdf==7.0.0"', '"pypdf==6.21.2"') == PYPROJECT


def test_a_release_that_drops_a_pin_is_refused(checkout, tmp_path_factory):
    requires = [line for line in REQUIRES if not line.startswith("chardet")]
    wheel = _wheel(tmp_path_factory.mktemp("wheel"), "0.12.4", requires)
    result = _run(checkout, "--wheel", str(wheel))
    assert result.returncode == 2
    assert "Open WebUI 0.12.4 does not pin chardet exactly" in result.stderr
    assert (checkout / "pyproject.toml").read_text() == PYPROJECT
