"""The three langchain splitters Open WebUI's upload runs (recursive character, token,
markdown headers), at Open WebUI's pinned langchain-text-splitters, without the
sentence-transformers (with torch, transformers and scikit-learn) and spaCy the package imports
for its other splitters: 0.9 s and 92 MiB instead of 7.5 s and 503 MiB in each process that
splits, measured (see `libraries_kept_out`). transformers stays out too: the package imports
its tokenizer base class only for `from_huggingface_tokenizer`, which Open WebUI never calls,
and it cost the run's process 21 MiB and 0.7 s (134 MiB instead of 155 MiB with the CLI's
imports)."""

from __future__ import annotations

from pgvector_migration.pipeline.libraries_kept_out import libraries_kept_out

with libraries_kept_out("sentence_transformers", "spacy", "transformers"):
    from langchain_text_splitters import (
        MarkdownHeaderTextSplitter,
        RecursiveCharacterTextSplitter,
        TokenTextSplitter,
    )

__all__ = ["MarkdownHeaderTextSplitter", "RecursiveCharacterTextSplitter", "TokenTextSplitter"]
