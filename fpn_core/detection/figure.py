"""The detection figure: boxes on the image, colored by the pyramid level that found them.

A matplotlib ``Figure`` built without ``pyplot`` (see ``fpn_core/figures.py``), used by the export
bundle and the dashboard's download. Each level has its app-wide color (``levels.LEVEL_COLORS``).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ..figures import LABEL_PT, TICK_PT, TITLE_PT, image_axes, new_figure, panel_size
from ..images import check_rgb
from ..levels import hex_color, stride_of
from .results import Detections

__all__ = ["detection_figure"]


def detection_figure(image: np.ndarray, dets: Detections, *, title: str | None = None) -> Figure:
    """The image with every detection's box, class and score, colored by its level, and a legend.

    Args:
        image: ``uint8`` RGB ``(H, W, 3)``: the image the detections were made on, or a resized
            copy of it (boxes are scaled to it).
        dets: from ``fpn_core.detection.detect``.
        title: the figure title (default: detector, count, threshold and weights).

    Returns:
        The figure.

    Raises:
        ValueError: if ``image`` is not RGB or its aspect ratio is not the detections' image's.
    """
    check_rgb(image)
    h, w = image.shape[:2]
    dh, dw = dets.image_hw
    sx, sy = w / dw, h / dh
    if abs(sx - sy) > 0.02 * max(sx, sy) + 1.0 / min(dh, dw):
        raise ValueError(f"the image ({w} × {h}) is not the one the detections were made on ({dw} × {dh})")
    fig = new_figure(*panel_size(w, h, base=8.0, extra_w=1.8, extra_h=0.8))
    ax = fig.add_subplot()
    ax.imshow(image, interpolation="antialiased")
    image_axes(ax)
    boxes = dets.boxes.numpy() * np.array([sx, sy, sx, sy], dtype=np.float32)
    for i in range(len(dets) - 1, -1, -1):  # best score drawn last, on top
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        color = hex_color(dets.levels[i])
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2.0))
        inside = y1 < 0.06 * h  # no room above the box: put the label inside its top edge
        ax.text(
            x1,
            y1,
            f"{dets.names[i]} {float(dets.scores[i]):.2f} · {dets.levels[i]}",
            fontsize=TICK_PT - 2,
            color="white",
            va="top" if inside else "bottom",
            ha="left",
            bbox={"facecolor": color, "edgecolor": "none", "pad": 1.5, "alpha": 0.9},
            clip_on=True,
        )
    counts = dets.count_per_level()
    handles = [
        Patch(facecolor=hex_color(level), label=f"{level} (stride {stride_of(level)}): {counts[level]}")
        for level in dets.level_names
    ]
    ax.legend(
        handles=handles,
        title="level: detections",
        fontsize=TICK_PT - 1,
        title_fontsize=TICK_PT,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
    )
    if title is None:
        trained = dets.provenance is None or dets.provenance.pretrained
        title = f"{dets.detector}: {len(dets)} detections with score ≥ {dets.score_threshold:.2f}" + (
            "" if trained else " (untrained detector: noise)"
        )
    ax.set_title(title, fontsize=TITLE_PT)
    ax.set_xlabel(f"{w} × {h} px; box color = pyramid level that found it", fontsize=LABEL_PT - 1)
    return fig
