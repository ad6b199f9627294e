"""Importing a module while some libraries it would import are taken for missing.

Libraries Open WebUI's image installs make two of its text libraries import far more than the
migration uses: langchain_text_splitters imports sentence-transformers and spaCy for splitters
Open WebUI's upload does not run, and spaCy's thinc imports torch for models that run on it
(the English pipeline unstructured loads runs on numpy). Each costs seconds and hundreds of MiB
in every process that loads or splits files (the CLI, the loader fork server and each worker).
A library kept out raises ImportError while the body of `libraries_kept_out` imports, which
those packages take for "not installed" in their optional-import branches; afterwards it
imports as usual, and one already imported is left alone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def libraries_kept_out(*names: str) -> Iterator[None]:
    """While the body runs, `import name` of each not yet imported library raises
    ImportError."""
    kept_out = [name for name in names if name not in sys.modules]
    sys.modules.update(dict.fromkeys(kept_out))
    try:
        yield
    finally:
        for name in kept_out:
            if sys.modules.get(name, "") is None:
                del sys.modules[name]
