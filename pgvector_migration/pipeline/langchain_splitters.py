"""The three langchain splitters Open WebUI's upload runs (recursive character, token,
markdown headers), at Open WebUI's pinned langchain-text-splitters, without what the package
imports for its other splitters.

The langchain_text_splitters package imports every splitter it has, and two of them import
sentence-transformers (with torch, transformers and scikit-learn) and spaCy when installed, as
Open WebUI's image has them: 6.6 s and 410 MiB in each process that splits (the CLI, the loader
fork server and each loader worker), measured, none of it used by these three. Those libraries
are kept out while the package loads (its two splitters that need them take them for missing;
nothing else reads that) and import as usual afterwards; one already imported is left alone.
"""

from __future__ import annotations

import sys

_UNUSED_BY_THESE_SPLITTERS = [
    name for name in ("sentence_transformers", "spacy") if name not in sys.modules
]
sys.modules.update(dict.fromkeys(_UNUSED_BY_THESE_SPLITTERS))
try:
    from langchain_text_splitters import (
        MarkdownHeaderTextSplitter,
        RecursiveCharacterTextSplitter,
        TokenTextSplitter,
    )
finally:
    for _name in _UNUSED_BY_THESE_SPLITTERS:
        del sys.modules[_name]

__all__ = ["MarkdownHeaderTextSplitter", "RecursiveCharacterTextSplitter", "TokenTextSplitter"]
