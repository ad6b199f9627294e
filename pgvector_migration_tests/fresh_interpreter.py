"""Run a test's script in a Python interpreter of its own, so that what the process imports
and how much memory it takes are the script's alone."""

from __future__ import annotations

import subprocess
import sys


def last_line_printed(script: str, timeout: float = 300) -> str:
    """The last line `script` prints; the test fails with its error output if it fails."""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]
