"""Widget keys, defaults and the ``Settings`` every page reads from the shared sidebar.

Every widget key is defined once here; tests find widgets by these keys. Keys that start
with an underscore are plain session-state entries (no widget), and hold only small data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fpn_core import DEFAULT_STAGES, PyramidConfig

# --------------------------------------------------------------------------- widget keys
KEY_SOURCE = "image_source"
KEY_SAMPLE = "sample_name"
KEY_UPLOAD = "image_upload"
KEY_WIDTH = "fpn_width"
KEY_STAGES = "fpn_stages"
KEY_UPSAMPLE = "fpn_upsample"
KEY_MERGE = "fpn_merge"
KEY_P6 = "fpn_p6"
KEY_SIZE = "input_size"
KEY_DEVICE = "device"
KEY_WEIGHTS = "weights"
KEY_REDUCTION = "map_reduction"
KEY_COLORMAP = "map_colormap"
KEY_ALPHA = "map_alpha"
KEY_SCOPE = "map_scope"
KEY_RETRY = "weights_retry"
KEY_REPEATS = "timing_repeats"
KEY_MEASURE = "timing_measure"
KEY_COMPARE_PLAIN = "timing_compare_plain"
KEY_OVERLAY_GROUP = "overlay_group"
KEY_EXPORT_SCALE = "export_scale"
KEY_OVERLAY_ZIP = "download_overlays_zip"
# Page widgets of the teaching pages (not in the URL: they belong to one page).
KEY_STEPS_ABLATION = "steps_ablation"
KEY_STEPS_PER_PANEL = "steps_per_panel"
KEY_AB_PRESET = "ab_preset"
#: Prefix of the A/B page's per-side widgets: ``ab_a_width``, ``ab_b_ablation`` ...
KEY_AB_PREFIX = "ab_"
AB_FIELDS: tuple[str, ...] = ("width", "stages", "upsample", "merge", "weights", "ablation")
KEY_PROBE_SOURCE = "probe_source"
KEY_PROBE_BOXES = "probe_boxes"
KEY_EXPORT_ZIP = "download_export_zip"

#: Every sidebar widget key, in the order they appear.
SIDEBAR_KEYS: tuple[str, ...] = (
    KEY_SOURCE,
    KEY_SAMPLE,
    KEY_UPLOAD,
    KEY_WIDTH,
    KEY_STAGES,
    KEY_UPSAMPLE,
    KEY_MERGE,
    KEY_P6,
    KEY_SIZE,
    KEY_DEVICE,
    KEY_WEIGHTS,
    KEY_REDUCTION,
    KEY_COLORMAP,
    KEY_ALPHA,
    KEY_SCOPE,
    KEY_EXPORT_SCALE,
)

# ------------------------------------------------------------- non-widget session entries
#: The last accepted upload: decoded RGB uint8 (long side <= 1024), its name and digest.
UPLOAD_IMAGE = "_upload_image"
UPLOAD_NAME = "_upload_name"
UPLOAD_DIGEST = "_upload_digest"
#: The message of the last refused upload (shown once as st.error).
UPLOAD_ERROR = "_upload_error"
#: The last valid stage selection, kept when the user picks an invalid one.
LAST_STAGES = "_last_valid_stages"

# ------------------------------------------------------------------------------ choices
SOURCE_SAMPLE, SOURCE_SCALES, SOURCE_UPLOAD = "Sample photo", "Scales (synthetic)", "Upload"
SOURCES: tuple[str, ...] = (SOURCE_SAMPLE, SOURCE_SCALES, SOURCE_UPLOAD)
UPLOAD_TYPES: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")

REDUCTION_LABELS: dict[str, str] = {
    "mean": "channel mean",
    "max": "channel max",
    "l2": "channel RMS (L2 / √C)",
    "std": "channel std",
}
SCOPE_LABELS: dict[str, str] = {
    "per-level": "per level (own colour scale)",
    "shared": "shared across levels",
}
GROUP_LEVELS, GROUP_STAGES = "Pyramid levels p_k", "Backbone stages c_k"
OVERLAY_GROUPS: tuple[str, ...] = (GROUP_LEVELS, GROUP_STAGES)
WEIGHT_LABELS: dict[str, str] = {
    "imagenet": "ImageNet backbone",
    "coco-fpn": "COCO Faster R-CNN (trained FPN)",
    "random": "random init",
}

# ----------------------------------------------------------------------------- defaults
DEFAULT_WIDTH = 256
WIDTH_MIN, WIDTH_MAX, WIDTH_STEP = 16, 512, 16
DEFAULT_SIZE = 512
SIZE_MIN, SIZE_MAX, SIZE_STEP = 64, 1024, 32
DEFAULT_ALPHA = 0.5
DEFAULT_REDUCTION = "mean"
DEFAULT_COLORMAP = "viridis"
DEFAULT_SCOPE = "per-level"
DEFAULT_WEIGHTS = "imagenet"
DEFAULT_STAGES_CHOICE: tuple[str, ...] = DEFAULT_STAGES
DEFAULT_REPEATS = 5
#: PNG download resolutions (1x = 100 dpi), as fpn_core.export offers them.
EXPORT_SCALES: tuple[int, ...] = (1, 2, 3)
DEFAULT_EXPORT_SCALE = 1


@dataclass(frozen=True)
class Settings:
    """What the shared sidebar chose, read by every page.

    Attributes:
        image: the chosen RGB uint8 image, or None when no usable image is chosen.
        image_name: a label for captions, e.g. ``"chelsea.jpg"``.
        image_digest: content hash of the image (keys the caches), ``""`` without image.
        width: FPN channel width d.
        stages: backbone stages feeding the FPN, fine to coarse.
        upsample: top-down upsampling mode.
        merge: how lateral and top-down maps are combined.
        p6: whether the extra stride-2 level is added.
        size: long side of the network input, in pixels.
        device: ``"cuda"``, ``"mps"`` or ``"cpu"``.
        weights: ``"imagenet"``, ``"coco-fpn"`` or ``"random"``.
        reduction: how channels collapse into one map (``fpn_core.maps.REDUCTIONS``).
        colormap: matplotlib colour map name.
        alpha: overlay opacity in [0, 1].
        scope: ``"per-level"`` or ``"shared"`` colour scale.
        export_scale: resolution multiplier of PNG downloads (1, 2 or 3; 1x = 100 dpi).
    """

    image: np.ndarray | None = field(default=None, compare=False, repr=False)
    image_name: str = ""
    image_digest: str = ""
    width: int = DEFAULT_WIDTH
    stages: tuple[str, ...] = DEFAULT_STAGES
    upsample: str = "nearest"
    merge: str = "sum"
    p6: bool = True
    size: int = DEFAULT_SIZE
    device: str = "cpu"
    weights: str = DEFAULT_WEIGHTS
    reduction: str = DEFAULT_REDUCTION
    colormap: str = DEFAULT_COLORMAP
    alpha: float = DEFAULT_ALPHA
    scope: str = DEFAULT_SCOPE
    export_scale: int = DEFAULT_EXPORT_SCALE

    @property
    def has_image(self) -> bool:
        """Whether a usable image is chosen."""
        return self.image is not None

    @property
    def reduction_label(self) -> str:
        """The reduction in words, e.g. ``"channel mean"``."""
        return REDUCTION_LABELS.get(self.reduction, self.reduction)

    def config(self, **changes: object) -> PyramidConfig:
        """The pyramid configuration these settings describe.

        Args:
            **changes: ``PyramidConfig`` fields to override (e.g. ``ablation="no-top-down"``).

        Returns:
            The frozen configuration (it keys the model caches).
        """
        fields: dict[str, object] = {
            "out_channels": self.width,
            "stages": self.stages,
            "upsample": self.upsample,
            "merge": self.merge,
            "p6": self.p6,
            "weights": self.weights,
            "device": self.device,
        }
        fields.update(changes)
        return PyramidConfig(**fields)  # type: ignore[arg-type]
