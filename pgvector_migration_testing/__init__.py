"""Test fakes of the outside systems the migration talks to, for its tests, benchmarks and
chaos runs: loopback HTTP servers that speak OpenAI's, Ollama's and Azure OpenAI's embeddings
protocols (:mod:`.openai_server`, :mod:`.provider_servers`, on the one base of
:mod:`.loopback`), Chroma stores as Open WebUI writes them (:mod:`.chroma_stores`) and a fast
filler of Open WebUI's ``document_chunk`` table (:mod:`.document_chunks`).

A package of its own, beside ``pgvector_migration``, so that ``bench/``, ``chaos/`` and
``fidelity/`` import the same fakes as the tests without reaching into the tests folder.
Nothing here is imported by the product.
"""
