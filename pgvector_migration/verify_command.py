"""`pgvector-migrate verify`: does search find what it should, per knowledge base, and how to
make it (--tune) or undo that (--untune)."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack

from pgvector_migration.embedding.registry import check_engine_settings
from pgvector_migration.pipeline.retrieval_quality import Thresholds
from pgvector_migration.resources.search_tuning import TuningScope
from pgvector_migration.resources.search_verification import (
    VerifyReport,
    figures,
    knowledge_collections,
    query_embedder,
    untune_search,
    verify_search,
)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("verify: search quality per knowledge base")
    group.add_argument(
        "--tune",
        action="store_true",
        help="apply the proposed pgvector search settings to the database (ALTER DATABASE ... "
        "SET), so Open WebUI's next sessions use them, and measure again",
    )
    group.add_argument(
        "--untune",
        action="store_true",
        help="put back the search settings --tune replaced, exactly as they were",
    )
    group.add_argument(
        "--tune-role",
        metavar="ROLE",
        help="set (or undo) the settings for this role (ALTER ROLE) instead of the database",
    )
    group.add_argument(
        "--shadow",
        action="store_true",
        help="measure a model switch's document_chunk_shadow instead of the live table, with "
        "queries embedded by the switch's --model (and --engine); measuring only: tune after "
        "the cutover",
    )
    group.add_argument(
        "--min-recall",
        type=float,
        default=Thresholds().min_recall,
        help="recall@10 every knowledge base must reach (default %(default)s)",
    )
    group.add_argument(
        "--verify-samples",
        type=int,
        default=20,
        metavar="N",
        help="chunks per knowledge base used as queries, each whole and shortened "
        "(default %(default)s)",
    )


def run_verify(args: argparse.Namespace, openwebui, vector_store, embeddings) -> int:
    """Measure, propose, apply or undo; print a table; write the summary JSON and the chart
    (of the live table, or with --shadow of a model switch's shadow)."""
    if not args.shadow:
        return _verify(args, openwebui, vector_store, embeddings)
    if not args.model or args.tune or args.untune:
        print(
            "pgvector-migrate verify --shadow: needs the switch's --model (its queries are "
            "embedded with it) and only measures: --tune and --untune act on the database "
            "Open WebUI searches, so tune after the cutover",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    from pgvector_migration.model_switch_cutover import shadow_view
    from pgvector_migration.resources.embedding import EmbeddingResource

    shadow = shadow_view(vector_store)
    switched = EmbeddingResource(engine=args.engine, model=args.model)
    try:
        return _verify(args, openwebui, shadow, switched)
    finally:
        shadow.close()


def _verify(args: argparse.Namespace, openwebui, vector_store, embeddings) -> int:
    scope = TuningScope(role=args.tune_role)
    thresholds = Thresholds(min_recall=args.min_recall)
    try:
        if args.untune:
            undone = untune_search(vector_store, scope, report=lambda s: print(f"ran: {s}"))
            if not undone:
                print("nothing to undo: no search settings were tuned for this target")
        settings = embeddings.effective_settings(openwebui.rag_settings())
        check_engine_settings(settings)
        collections = args.knowledge_id or knowledge_collections(vector_store)
        with ExitStack() as stack:
            old_store = None
            if args.from_chroma:
                from pgvector_migration.resources.chroma_store import ChromaSnapshot

                old_store = stack.enter_context(ChromaSnapshot(args.from_chroma))
            report = verify_search(
                vector_store,
                collections,
                query_embedder(settings, embeddings),
                thresholds=thresholds,
                samples=args.verify_samples,
                tune=args.tune and not args.untune,
                scope=scope,
                report=lambda line: print(f"ran: {line}" if line.startswith("ALTER") else line),
                old_store=old_store,
            )
    except Exception as error:
        print(f"pgvector-migrate: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    print(report_text(report))
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(report.as_json(), indent=2) + "\n")
        if report.before:
            from pgvector_migration.retrieval_chart import write_recall_chart

            chart = write_recall_chart(
                args.summary_json.with_suffix(".png"),
                report.before,
                report.after,
                thresholds.min_recall,
                report.k,
                after_label="after tuning" if report.applied else "proposed settings",
            )
            print(f"chart: {chart}")
    return EXIT_OK if report.passed else EXIT_FAILED


def report_text(report: VerifyReport) -> str:
    """Short and readable: one figure a line, then the table of knowledge bases."""
    index = report.index
    lines = [
        f"table: {report.table}",
        f"pgvector: {index.pgvector_version or 'not installed'}, index: "
        f"{index.method or 'none (every search is exact)'}"
        + (f" lists={index.lists}" if index.lists else ""),
        f"Open WebUI's per-query settings: {report.open_webui_settings or 'none'}",
        f"knowledge bases verified: {len(report.before)}",
    ]
    before, after = figures(report.before), figures(report.after)
    if before:
        lines.append(
            f"recall@{report.k} worst / mean (Open WebUI defaults): "
            f"{before['min_recall']} / {before['mean_recall']}, median query "
            f"{before['median_index_ms']} ms (exact {before['median_exact_ms']} ms)"
        )
    overlaps = [q.old_store_overlap for q in report.before if q.old_store_overlap is not None]
    if overlaps:
        lines.append(
            f"overlap with the old store's top {report.k} (mean / worst knowledge base): "
            f"{sum(overlaps) / len(overlaps):.3f} / {min(overlaps):.3f}"
        )
    if index.method and not index.iterative_scans and not report.passed:
        lines.append(
            f"pgvector {index.pgvector_version} has no iterative index scans: upgrade to 0.8 or "
            "newer so filtered searches can be tuned"
        )
    if report.proposal:
        state = "applied" if report.applied else "proposed (apply with --tune)"
        lines.append(f"settings {state}: {report.proposal}")
        if not report.proposal_sufficient:
            lines.append(
                "even the widest settings tried stay below the threshold: the index itself "
                "recalls too little; rebuild it with "
                + (
                    "a larger PGVECTOR_HNSW_M / PGVECTOR_HNSW_EF_CONSTRUCTION"
                    if index.method == "hnsw"
                    else "more PGVECTOR_IVFFLAT_LISTS on more rows"
                )
            )
    if after:
        lines.append(
            f"recall@{report.k} worst / mean ({'after' if report.applied else 'with proposal'}): "
            f"{after['min_recall']} / {after['mean_recall']}, median query "
            f"{after['median_index_ms']} ms"
        )
    by_name = {q.collection: q for q in report.after}
    header = (
        f"{'knowledge base':38} {'rows':>8} {'recall':>7} {'after':>6} {'self':>5} "
        f"{'ms':>7} {'ms after':>8}"
    )
    lines += ["", header, "-" * len(header)]
    for quality in sorted(report.before, key=lambda q: -q.rows):
        later = by_name.get(quality.collection)
        lines.append(
            f"{quality.collection[:38]:38} {quality.rows:>8} {quality.recall:>7.3f} "
            f"{(f'{later.recall:.3f}' if later else '-'):>6} {quality.self_retrieval:>5.2f} "
            f"{quality.index_ms:>7.2f} {(f'{later.index_ms:.2f}' if later else '-'):>8}"
        )
    final = report.after if report.applied else report.before
    for quality in final:
        for failure in quality.failures:
            lines.append(f"FAILED {quality.collection}: {failure}")
    return "\n".join(lines)
