"""Pictures and an HTML report people can look at: anomaly maps over images, histograms."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader

from anomalyops.components.training.model_dir import write_file
from anomalyops.serving.images.decode import png_base64, printable
from anomalyops.serving.images.heatmap import map_range, overlay

# HTML lives in templates/ beside this module; autoescape everywhere, so names are safe.
TEMPLATES = Environment(loader=PackageLoader("anomalyops.components.reports"), autoescape=True)


def histogram_png(scores: np.ndarray, labels: np.ndarray, threshold: float | None) -> str:
    """Score histograms of good vs defective images, with the threshold, as base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    bins = np.histogram_bin_edges(scores, bins=30)
    axes.hist(scores[labels == 0], bins=bins, alpha=0.6, label="good", color="tab:green")
    if (labels == 1).any():
        axes.hist(scores[labels == 1], bins=bins, alpha=0.6, label="defective", color="tab:red")
    if threshold is not None:
        axes.axvline(threshold, color="black", linestyle="--", label="threshold")
    axes.set_xlabel("anomaly score")
    axes.set_ylabel("images")
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def pick_examples(scores: np.ndarray, labels: np.ndarray, count: int) -> list[int]:
    """The highest-scoring good images and the lowest- and highest-scoring defective ones."""
    good = np.flatnonzero(labels == 0)
    bad = np.flatnonzero(labels == 1)
    quarter = max(1, count // 4)
    chosen = list(good[np.argsort(-scores[good])][:quarter])
    ranked_bad = bad[np.argsort(scores[bad])]
    chosen += list(ranked_bad[:quarter]) + list(ranked_bad[::-1][: count - 2 * quarter])
    return list(dict.fromkeys(int(i) for i in chosen))[:count]


def write_report(
    path: str | Path,
    title: str,
    metrics: dict[str, object],
    images: np.ndarray,
    maps: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    threshold: float | None,
    notes: Sequence[str] = (),
    count: int = 24,
) -> Path:
    """A self-contained HTML file (images inlined) with metrics, histogram and map grid."""
    chosen = pick_examples(scores, labels, count)
    vmin, vmax = map_range(maps)
    tiles = [
        {
            "name": printable(Path(names[i]).parent.name + "/" + Path(names[i]).name),
            "png": png_base64(overlay(images[i], maps[i], vmin, vmax)),
            "truth": "defective" if labels[i] else "good",
            "score": f"{scores[i]:.3g}",
            "flagged": threshold is not None and scores[i] > threshold,
        }
        for i in chosen
    ]
    rendered = TEMPLATES.get_template("evaluation.html").render(
        title=title,
        metrics=[(k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in metrics.items()],
        notes=list(notes),
        histogram=histogram_png(scores, labels, threshold),
        tiles=tiles,
    )
    return write_file(path, rendered, "--report")
