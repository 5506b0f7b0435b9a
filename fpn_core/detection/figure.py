"""The detection figure: boxes on the image, colored by the pyramid level that found them.

A matplotlib ``Figure`` built without ``pyplot`` (see ``fpn_core/figures.py``), used by the export
bundle and the dashboard's download. Each level has its app-wide color (``levels.LEVEL_COLORS``).
Mask R-CNN's masks are tinted and Keypoint R-CNN's keypoints drawn as a skeleton in the same
colors, by the numpy painters :func:`tint_masks` and :func:`draw_keypoints` (the screen uses them too).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ..figures import LABEL_PT, TICK_PT, TITLE_PT, image_axes, new_figure, panel_size
from ..images import check_rgb
from ..levels import LEVEL_COLORS, hex_color, stride_of
from .results import Detections

__all__ = ["COCO_SKELETON", "detection_figure", "draw_keypoints", "skeleton_for", "tint_masks"]

#: The COCO person skeleton (``person_keypoints`` annotations' ``skeleton``, 0-based), in the order of
#: torchvision's 17 keypoints: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles (left, right).
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
#: A mask pixel belongs to the object from this probability on (torchvision's own binarisation).
MASK_THRESHOLD = 0.5
MASK_ALPHA = 0.45


def skeleton_for(num_keypoints: int) -> tuple[tuple[int, int], ...]:
    """The bones to draw: the COCO person skeleton for 17 keypoints; none (points only) for any other count."""
    return COCO_SKELETON if num_keypoints == 17 else ()


def _level_rgb(levels: Sequence[str]) -> list[tuple[int, int, int]]:
    return [LEVEL_COLORS.get(level, (255, 255, 255)) for level in levels]


def tint_masks(
    image: np.ndarray,
    masks: np.ndarray,
    colors: Sequence[tuple[int, int, int]],
    *,
    alpha: float = MASK_ALPHA,
) -> np.ndarray:
    """A copy of ``image`` with each mask's pixels (probability >= 0.5) tinted in its color.

    Args:
        image: RGB uint8 ``(H, W, 3)``.
        masks: ``(N, h, w)`` probabilities in [0, 1] on the detections' image (resized to ``image`` when
            its size differs), best first (painted last, on top).
        colors: one RGB color per mask (the level's).
        alpha: how much of the color covers a mask pixel.

    Returns:
        RGB uint8 of the image's shape.
    """
    out = np.asarray(image, dtype=np.float32).copy()
    h, w = out.shape[:2]
    for i in range(len(masks) - 1, -1, -1):
        m = np.asarray(masks[i], dtype=np.float32)
        if m.shape != (h, w):
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        inside = m >= MASK_THRESHOLD
        out[inside] = (1.0 - alpha) * out[inside] + alpha * np.asarray(colors[i], dtype=np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def draw_keypoints(
    image: np.ndarray,
    keypoints: np.ndarray,
    colors: Sequence[tuple[int, int, int]],
    *,
    scale: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """A copy of ``image`` with each instance's keypoints as dots and, for 17 (COCO person), its skeleton.

    Args:
        image: RGB uint8 ``(H, W, 3)``.
        keypoints: ``(N, K, 3)``: x, y, visibility in the detections' image pixels; points with
            visibility <= 0 are left out.
        colors: one RGB color per instance (its level's).
        scale: (sx, sy) from the detections' image to ``image``.

    Returns:
        RGB uint8 of the image's shape.
    """
    from PIL import Image, ImageDraw

    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(pil)
    h, w = image.shape[:2]
    line = max(2, round(max(h, w) / 300))
    radius = line + 1
    sx, sy = scale
    for i in range(len(keypoints) - 1, -1, -1):
        pts = np.asarray(keypoints[i], dtype=np.float32)
        xy = [(float(x) * sx, float(y) * sy) for x, y in pts[:, :2]]
        seen = pts[:, 2] > 0
        color = tuple(colors[i])
        for a, b in skeleton_for(len(pts)):
            if seen[a] and seen[b]:
                draw.line((xy[a], xy[b]), fill=color, width=line)
        for (x, y), visible in zip(xy, seen, strict=True):
            if visible:
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color, outline=(255, 255, 255))
    return np.asarray(pil)


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
    colors = _level_rgb(dets.levels)
    if dets.masks is not None and len(dets):
        image = tint_masks(image, dets.masks.numpy(), colors)
    if dets.keypoints is not None and len(dets):
        image = draw_keypoints(image, dets.keypoints.numpy(), colors, scale=(sx, sy))
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
