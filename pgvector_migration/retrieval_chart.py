"""The picture of `verify`: recall per knowledge base before and after tuning, as a PNG.

matplotlib is imported only when a chart is drawn, so importing the code location stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pgvector_migration.pipeline.retrieval_quality import CollectionQuality


def write_recall_chart(
    path: Path,
    before: Sequence[CollectionQuality],
    after: Sequence[CollectionQuality],
    min_recall: float,
    k: int,
    after_label: str = "after tuning",
) -> Path:
    """Bars of recall@k per collection (largest first), before and, when measured, after;
    a line at the threshold. Collection names are shown when there are few enough."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    order = sorted(range(len(before)), key=lambda i: (-before[i].rows, before[i].collection))
    positions = list(range(len(order)))
    width = 0.42 if after else 0.8
    figure, axes = pyplot.subplots(figsize=(max(6.0, min(16.0, 0.16 * len(order) + 4)), 4.2))
    axes.bar(
        [p - (width / 2 if after else 0) for p in positions],
        [before[i].recall for i in order],
        width,
        label="Open WebUI defaults",
        color="#d9534f",
    )
    if after:
        by_name = {q.collection: q for q in after}
        axes.bar(
            [p + width / 2 for p in positions],
            [by_name[before[i].collection].recall for i in order],
            width,
            label=after_label,
            color="#2e7d32",
        )
    axes.axhline(
        min_recall, color="black", linestyle="--", linewidth=1, label=f"threshold {min_recall}"
    )
    axes.set_ylim(0, 1.05)
    axes.set_ylabel(f"recall@{k} (index vs exact)")
    axes.set_xlabel("knowledge base, largest first", labelpad=2)
    if len(order) <= 24:
        axes.set_xticks(positions)
        axes.set_xticklabels(
            [f"{before[i].collection[:10]}\n{before[i].rows} rows" for i in order],
            rotation=60,
            fontsize=7,
        )
    else:
        axes.set_xticks([])
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8)
    axes.set_title(f"Filtered search recall@{k} per knowledge base")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path
