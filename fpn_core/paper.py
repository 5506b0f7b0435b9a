"""The FPN paper's numbers, in one table: captions, labels and the level rule read them here.

Lin, Dollár, Girshick, He, Hariharan and Belongie, "Feature Pyramid Networks for Object
Detection", CVPR 2017 (arXiv 1612.03144); ResNet-50 on COCO minival throughout. Text
elsewhere cites these names instead of retyping the numbers, so a correction is made once.
"""

from __future__ import annotations

from dataclasses import dataclass

from .fpn import ABLATIONS

__all__ = [
    "ANCHOR_SIZES",
    "CANONICAL_LEVEL",
    "CANONICAL_SIZE",
    "CHANNELS",
    "CITATION",
    "LEVEL_RULE",
    "LEVEL_RULE_FLOOR",
    "LEVEL_RULE_LATEX",
    "TABLE1",
    "TABLE1_BASELINE",
    "TABLE1_SOURCE",
    "TABLE3_AP",
    "WHAT_AN_FPN_IS",
    "Recall",
    "ablation_label",
    "ablation_note",
    "table1_rows",
]

CITATION = "Lin et al., CVPR 2017"

CHANNELS = 256
"""The width d of every pyramid level (section 3)."""

ANCHOR_SIZES = (32, 64, 128, 256, 512)
"""The RPN's anchor side on p2..p6, in pixels (section 4.1); the largest is why p6 exists."""

CANONICAL_SIZE = 224
"""Eq. (1): ImageNet's pre-training size, the region side that goes to level CANONICAL_LEVEL."""

CANONICAL_LEVEL = 4
"""Eq. (1)'s k0: the level a CANONICAL_SIZE region is assigned to."""

LEVEL_RULE_FLOOR = f"⌊{CANONICAL_LEVEL} + log2(√(wh)/{CANONICAL_SIZE})⌋"
"""The right-hand side of eq. (1) as plain text, for labels."""

LEVEL_RULE = f"k = {LEVEL_RULE_FLOOR}"
"""Eq. (1) as plain text, for captions."""

LEVEL_RULE_LATEX = (
    rf"k = \left\lfloor {CANONICAL_LEVEL} + \log_2\!\left(\sqrt{{w h}}\,/\,{CANONICAL_SIZE}\right) \right\rfloor"
)
"""Eq. (1) for ``st.latex``."""


@dataclass(frozen=True)
class Recall:
    """One row of Table 1: region-proposal average recall with 1000 proposals.

    Attributes:
        setting: the paper's description of the row.
        ar: AR1k over all objects.
        ar_small: AR1k on small objects.
    """

    setting: str
    ar: float
    ar_small: float


TABLE1_SOURCE = f"FPN paper ({CITATION}), Table 1: ResNet-50 RPN on COCO minival, AR with 1000 proposals"

TABLE1_BASELINE = Recall("single c4 feature map", 48.3, 32.0)
"""The paper's single-map baseline, for context."""

TABLE1: dict[str, Recall] = {
    "full": Recall("FPN", 56.3, 44.9),
    "no-top-down": Recall("bottom-up pyramid only (no top-down)", 49.5, 30.5),
    "no-lateral": Recall("top-down without lateral connections", 46.1, 26.5),
    "finest-only": Recall("P2 only (finest level, no pyramid)", 51.3, 35.1),
}
"""Table 1 per ablation of :data:`fpn_core.fpn.ABLATIONS`."""

TABLE3_AP: dict[str, float] = {"c4": 31.6, "fpn": 33.9}
"""Table 3: Faster R-CNN box AP with the single c4 map and with the FPN."""


def ablation_label(name: str) -> str:
    """``"no-top-down — AR1k 49.5 (paper)"``: an ablation with its paper number."""
    return f"{name} — AR1k {TABLE1[name].ar} (paper)"


def ablation_note(name: str) -> str:
    """What an ablation does and what the paper measured for it (markdown)."""
    row = TABLE1[name]
    return (
        f"{ABLATIONS[name]}. Paper, Table 1 ({row.setting}): AR1k **{row.ar}**, small objects **{row.ar_small}** "
        f"(single c4 map: {TABLE1_BASELINE.ar} / {TABLE1_BASELINE.ar_small})."
    )


def table1_rows() -> list[dict[str, object]]:
    """Table 1 as rows, the ablations this app can run marked with their names."""
    rows: list[dict[str, object]] = [
        {
            "setting": TABLE1_BASELINE.setting,
            "ablation here": "—",
            "AR1k": TABLE1_BASELINE.ar,
            "AR1k small": TABLE1_BASELINE.ar_small,
        }
    ]
    for name, row in TABLE1.items():
        rows.append({"setting": row.setting, "ablation here": name, "AR1k": row.ar, "AR1k small": row.ar_small})
    return rows


WHAT_AN_FPN_IS = f"""
A convolutional network such as **ResNet-50** shrinks the image step by step. Its stages
**c2, c3, c4, c5** have strides **4, 8, 16, 32** (one cell per 4 … 32 pixels) and 256, 512,
1024 and 2048 channels. Fine stages see small details but little meaning; coarse stages know
*what* is there but not precisely *where*.

An FPN (Lin et al., *Feature Pyramid Networks for Object Detection*, CVPR 2017) gives every
level both:

1. **Lateral 1×1 convs** bring each stage c_k to the same width *d* (the paper uses d = {CHANNELS}).
2. A **top-down path** starts at the coarsest level, **upsamples 2× (nearest neighbour)** and
   **adds** the lateral of the next finer stage.
3. A **3×3 conv** on each merged map gives **p_k**; the paper says it "reduces the aliasing
   effect of upsampling". No non-linearities are used in these extra layers.
4. **p6** is a stride-2 *subsampling* of p5 for the largest anchors. torchvision writes it as
   `max_pool2d(kernel_size=1, stride=2)`: with a 1×1 kernel that is subsampling, not pooling.

**What it buys** (paper, ResNet-50, COCO minival): region-proposal average recall AR1k rises
from **{TABLE1_BASELINE.ar}** with a single c4 map to **{TABLE1["full"].ar}** with the FPN, and for small objects
from **{TABLE1_BASELINE.ar_small}** to **{TABLE1["full"].ar_small}** (Table 1). Faster R-CNN improves from
{TABLE3_AP["c4"]} to **{TABLE3_AP["fpn"]} AP** (Table 3).
"""
"""The Home page's "What an FPN is" (markdown); the lecture deck's notes read it too."""
