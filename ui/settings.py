"""The one settings object, and the one table of sidebar controls it is made from.

Each sidebar control is one :class:`Control` row: its widget key (which is also its URL query
parameter), label, default, range or options, and how URL text is parsed. Everything else is
derived from that table:

- the sidebar widgets (``ui.sidebar`` draws each row);
- the defaults (seeded into session state once, so widgets never get two sources);
- the URL reader (:func:`parse_params`: a bad value is refused with a warning that names it)
  and writer (:func:`url_params`);
- :class:`Settings`, built from the widgets' values by :func:`settings_from_state`. It holds a
  ``PyramidConfig`` and a ``MapStyle`` (both frozen), which key every cache.

The sidebar is drawn once per run by the frame (``dashboard.py``), before the page runs, so a
widget keeps its value on every page natively: no copies of values are kept anywhere else.

Why not streamlit's ``bind="query-params"``: it drops an invalid URL value silently, and a
shared link that does not open as sent should say why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from fpn_core import DEFAULT_STAGES, FPN_STAGES, MERGE_MODES, UPSAMPLE_MODES, WEIGHT_CHOICES, PyramidConfig
from fpn_core.export import EXPORT_SCALES
from fpn_core.fpn import MAX_OUT_CHANNELS, MIN_OUT_CHANNELS
from fpn_core.levels import validate_stages
from fpn_core.maps import CHANNEL_AGGREGATIONS, COLORMAPS, SCOPES, MapStyle
from fpn_core.paper import CHANNELS
from fpn_core.pyramid import DEFAULT_SIZE, MAX_SIZE, MIN_SIZE
from fpn_core.weights import WEIGHT_LABELS

# --------------------------------------------------------------------------- widget keys
# Sidebar keys are also the URL's query parameter names: keep them stable (links in slides).
KEY_SOURCE = "image_source"
KEY_SAMPLE = "sample_name"
KEY_UPLOAD = "image_upload"
KEY_CAMERA = "image_camera"
KEY_OUT_CHANNELS = "fpn_width"
KEY_STAGES = "fpn_stages"
KEY_UPSAMPLE = "fpn_upsample"
KEY_MERGE = "fpn_merge"
KEY_P6 = "fpn_p6"
KEY_SIZE = "input_size"
KEY_DEVICE = "device"
KEY_WEIGHTS = "weights"
KEY_AGGREGATION = "map_reduction"
KEY_COLORMAP = "map_colormap"
KEY_ALPHA = "map_alpha"
KEY_SCOPE = "map_scope"
KEY_EXPORT_SCALE = "export_scale"
# Widgets of one page (not in the URL: they belong to that page's view).
KEY_RETRY = "weights_retry"
KEY_REPEATS = "timing_repeats"
KEY_MEASURE = "timing_measure"
KEY_COMPARE_PLAIN = "timing_compare_plain"
KEY_OVERLAY_GROUP = "overlay_group"
KEY_OVERLAY_ZIP = "download_overlays_zip"
KEY_STEPS_ABLATION = "steps_ablation"
KEY_STEPS_PER_PANEL = "steps_per_panel"
KEY_AB_PRESET = "ab_preset"
#: Prefix of the A/B page's per-side widgets: ``ab_a_out_channels``, ``ab_b_ablation`` ...
KEY_AB_PREFIX = "ab_"
KEY_PROBE_SOURCE = "probe_source"
KEY_PROBE_BOXES = "probe_boxes"
KEY_EXPORT_ZIP = "download_export_zip"
KEY_DETECTOR = "detection_detector"
KEY_DETECTION_SIZE = "detection_size"
KEY_DETECTION_SCORE = "detection_score"
KEY_DETECTION_NOISE = "detection_untrained_boxes"
KEY_DETECTION_PROPOSALS = "detection_proposals"
KEY_DETECTION_SHARED = "detection_shared_scale"
KEY_DETECTION_RETRY = "detection_retry"
KEY_DETECTION_PNG = "download_detections"
KEY_RF_X = "receptive_x"
KEY_RF_Y = "receptive_y"
KEY_RF_CLICK = "receptive_click"
KEY_RF_CHANNEL = "receptive_channel"
KEY_RF_MAGNITUDE = "receptive_magnitude"

# ------------------------------------------------------------- non-widget session entries
#: The last accepted upload or photo: decoded RGB uint8 (long side <= 1024), its name and digest.
UPLOAD_IMAGE = "_upload_image"
UPLOAD_NAME = "_upload_name"
UPLOAD_DIGEST = "_upload_digest"
#: The message of the last refused upload (shown next to the uploader).
UPLOAD_ERROR = "_upload_error"
#: How many times "Measure again" was pressed (a new number measures anew; others reuse the last).
TIMING_RUNS = "_timing_runs"
#: The last valid stage selection, used while the picker holds an invalid one.
LAST_STAGES = "_last_valid_stages"
#: The Detection page's last drawn boxes (a ``ui.cache.DetectionChoice``): Export adds them.
DETECTION_SHOWN = "_detection_shown"
#: The image digest the Receptive fields page's point belongs to (a new image resets it to the centre).
RF_POINT_IMAGE = "_receptive_point_image"

# ------------------------------------------------------------------------------ choices
SOURCE_SAMPLE, SOURCE_SCALES, SOURCE_UPLOAD, SOURCE_CAMERA = "sample", "scales", "upload", "camera"
SOURCE_LABELS: dict[str, str] = {
    SOURCE_SAMPLE: "Sample photo",
    SOURCE_SCALES: "Scales (synthetic)",
    SOURCE_UPLOAD: "Upload",
    SOURCE_CAMERA: "Camera",
}
UPLOAD_TYPES: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
AGGREGATION_LABELS: dict[str, str] = {
    "mean": "channel mean",
    "max": "channel max",
    "l2": "channel RMS (L2 / √C)",
    "std": "channel std",
    "pc1": "first principal component",
}
SCOPE_LABELS: dict[str, str] = {"per-level": "per level (own color scale)", "shared": "shared across levels"}
GROUP_LEVELS, GROUP_STAGES = "Pyramid levels p_k", "Backbone stages c_k"
OVERLAY_GROUPS: tuple[str, ...] = (GROUP_LEVELS, GROUP_STAGES)
DEFAULT_REPEATS = 5
#: Steps of the sidebar sliders (the engine accepts any multiple of 8 for the width).
OUT_CHANNELS_STEP, SIZE_STEP, ALPHA_STEP = 16, 32, 0.05

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


# ------------------------------------------------------------------------------- table


@dataclass(frozen=True)
class Control:
    """One sidebar control: everything the widget, the URL and the defaults need.

    Attributes:
        key: widget key and URL query parameter.
        label: the widget's label.
        widget: ``"slider"``, ``"select"``, ``"radio"``, ``"toggle"`` or ``"multiselect"``.
        default: the value before the user or a link sets one.
        options: the choices of a select, radio or multiselect.
        bounds: ``(low, high, step)`` of a slider.
        labels: option -> text shown (options themselves travel in the URL).
        help: the widget's tooltip.
        check: extra validation of a parsed value (raises ``ValueError``), e.g. stage contiguity.
    """

    key: str
    label: str
    widget: str
    default: object
    options: tuple[object, ...] = ()
    bounds: tuple[float, float, float] | None = None
    labels: Mapping[object, str] = field(default_factory=dict)
    help: str | None = None
    check: Callable[[object], object] | None = None

    def show(self, option: object) -> str:
        """How an option reads on screen."""
        return self.labels.get(option, str(option))

    def parse(self, raw: str) -> object:
        """URL text -> widget value.

        Raises:
            ValueError: saying what was expected.
        """
        raw = raw.strip()
        if self.widget == "slider":
            value = _parse_number(raw, self.bounds, integer=isinstance(self.default, int))  # type: ignore[arg-type]
        elif self.widget == "toggle":
            value = _parse_bool(raw)
        elif self.widget == "multiselect":
            picked = [s.strip() for s in raw.split(",") if s.strip()]
            unknown = [s for s in picked if s not in self.options]
            if unknown:
                raise ValueError(f"expected items from {', '.join(map(str, self.options))}, got {', '.join(unknown)}")
            value = [o for o in self.options if o in picked]
        else:
            value = next((o for o in self.options if raw in (str(o), f"{o}x")), None)
            if value is None:
                raise ValueError(f"expected one of {', '.join(map(str, self.options))}")
        if self.check is not None:
            self.check(value)
        return value

    def to_url(self, value: object) -> str:
        """Widget value -> URL text: lists comma-joined, booleans ``true``/``false``."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


def _parse_number(raw: str, bounds: tuple[float, float, float], *, integer: bool) -> float | int:
    lo, hi, step = bounds
    kind = "whole number" if integer else "number"
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ValueError(f"expected a {kind} from {lo:g} to {hi:g}") from None
    steps = (value - lo) / step
    if not (math.isfinite(value) and lo <= value <= hi and abs(steps - round(steps)) < 1e-6):
        raise ValueError(f"expected a {kind} from {lo:g} to {hi:g} in steps of {step:g}")
    return value if integer else round(lo + round(steps) * step, 6)


def _parse_bool(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError("expected true or false")


def _check_stages(value: object) -> object:
    try:
        validate_stages(tuple(value))  # type: ignore[arg-type]
    except ValueError:
        raise ValueError("expected a contiguous run of two or more stages, e.g. c3,c4,c5") from None
    return value


@lru_cache(maxsize=8)
def controls(
    samples: tuple[str, ...], devices: tuple[str, ...], models: tuple[tuple[str, str], ...] = ()
) -> dict[str, Control]:
    """The sidebar's controls in drawing order, by key.

    Args:
        samples: the sample photos offered (the first is the default).
        devices: the devices present, best first (the first is the default).
        models: the models folder's checkpoints as (choice, label): ``("file:pennfudan.pth",
            "pennfudan.pth — Faster R-CNN, 2 classes")``, offered after the built-in weights.
    """
    weight_labels = {**WEIGHT_LABELS, **dict(models)}
    table = [
        Control(KEY_SOURCE, "Image source", "radio", SOURCE_SAMPLE, tuple(SOURCE_LABELS), labels=SOURCE_LABELS),
        Control(KEY_SAMPLE, "Sample", "select", samples[0] if samples else None, samples),
        Control(
            KEY_OUT_CHANNELS,
            "FPN channel width d",
            "slider",
            CHANNELS,
            bounds=(MIN_OUT_CHANNELS, MAX_OUT_CHANNELS, OUT_CHANNELS_STEP),
            help=f"Channels of every pyramid level. The paper uses d = {CHANNELS}.",
        ),
        Control(
            KEY_STAGES,
            "Input stages",
            "multiselect",
            list(DEFAULT_STAGES),
            FPN_STAGES,
            help="A contiguous run of two or more backbone stages feeds the FPN (the paper uses c2..c5).",
            check=_check_stages,
        ),
        Control(KEY_UPSAMPLE, "Upsampling", "select", UPSAMPLE_MODES[0], UPSAMPLE_MODES),
        Control(KEY_MERGE, "Merge", "select", MERGE_MODES[0], MERGE_MODES),
        Control(KEY_P6, "Add p6 (stride-2 subsampling of the top level)", "toggle", True),
        Control(KEY_SIZE, "Input size (long side, px)", "slider", DEFAULT_SIZE, bounds=(MIN_SIZE, MAX_SIZE, SIZE_STEP)),
        Control(KEY_DEVICE, "Device", "select", devices[0] if devices else "cpu", devices),
        Control(
            KEY_WEIGHTS,
            "Weights",
            "select",
            "imagenet",
            (*WEIGHT_CHOICES, *(choice for choice, _ in models)),
            labels=weight_labels,
            help="ImageNet or COCO weights, or a checkpoint of the models folder (its backbone and its trained FPN)."
            if models
            else None,
        ),
        Control(
            KEY_AGGREGATION, "Channel aggregation", "select", "mean", CHANNEL_AGGREGATIONS, labels=AGGREGATION_LABELS
        ),
        Control(KEY_COLORMAP, "Color map", "select", "viridis", COLORMAPS),
        Control(KEY_ALPHA, "Overlay alpha", "slider", 0.5, bounds=(0.0, 1.0, ALPHA_STEP)),
        Control(
            KEY_SCOPE,
            "Color scale",
            "radio",
            "per-level",
            SCOPES,
            labels=SCOPE_LABELS,
            help="Per level shows the pattern inside each map; shared shows which level is strongest.",
        ),
        Control(
            KEY_EXPORT_SCALE,
            "Export resolution",
            "radio",
            1,
            EXPORT_SCALES,
            labels={s: f"{s}× ({100 * s} dpi)" for s in EXPORT_SCALES},
            help="Resolution of every PNG download (2× or 3× for slides). The screen always shows 1×.",
        ),
    ]
    return {c.key: c for c in table}


def defaults(table: Mapping[str, Control]) -> dict[str, object]:
    """Every control's default value, by key."""
    return {key: c.default for key, c in table.items()}


# ------------------------------------------------------------------------------- URL


def parse_params(
    params: Mapping[str, str | Sequence[str]], table: Mapping[str, Control]
) -> tuple[dict[str, object], list[str]]:
    """Check query parameters against the controls.

    Args:
        params: name -> value (a list when repeated; the last one counts). Names that are not
            control keys are ignored.
        table: the controls (:func:`controls`).

    Returns:
        The accepted values by key, and one message per refused value that names the
        parameter, what was expected and the default used instead.
    """
    accepted: dict[str, object] = {}
    notices: list[str] = []
    for key, control in table.items():
        if key not in params:
            continue
        value = params[key]
        raw = str(value[-1] if isinstance(value, (list, tuple)) and value else value)
        try:
            accepted[key] = control.parse(raw)
        except ValueError as exc:
            shown = "none" if control.default is None else control.to_url(control.default)
            notices.append(f"`{key}={raw.strip()}` in the link is not valid ({exc}); using the default {shown}.")
    return accepted, notices


def url_params(state: Mapping[str, object], table: Mapping[str, Control]) -> dict[str, str]:
    """The controls' current values as query parameters (those the sidebar has drawn)."""
    return {key: c.to_url(state[key]) for key, c in table.items() if state.get(key) is not None}


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class ImageChoice:
    """The image the sidebar chose.

    Attributes:
        name: a label for captions, e.g. ``"chelsea.jpg"``.
        digest: content hash (keys the analysis caches).
        array: RGB uint8 pixels, read-only (left out of comparisons and hashes).
    """

    name: str
    digest: str
    array: np.ndarray = field(compare=False, repr=False)


@dataclass(frozen=True)
class Settings:
    """What the sidebar chose, read by every page.

    Attributes:
        image: the chosen image, or None when no usable image is chosen.
        config: the pyramid (width, stages, upsampling, merge, p6, weights, device).
        style: how maps are drawn (aggregation, color map, alpha, scope).
        size: long side of the network input, in pixels.
        export_scale: resolution multiplier of PNG downloads (1x = 100 dpi).
    """

    image: ImageChoice | None
    config: PyramidConfig
    style: MapStyle
    size: int = DEFAULT_SIZE
    export_scale: int = 1

    @property
    def aggregation_label(self) -> str:
        """The channel aggregation in words, e.g. ``"channel mean"``."""
        return AGGREGATION_LABELS.get(self.style.aggregation, self.style.aggregation)

    def with_config(self, **changes: object) -> Settings:
        """The same settings with some ``PyramidConfig`` fields changed (e.g. ``ablation=...``)."""
        return replace(self, config=replace(self.config, **changes))  # type: ignore[arg-type]


def stages_from_state(state: MutableMapping[str, object]) -> tuple[tuple[str, ...], str | None]:
    """The stages to use, and an error message when the picker holds an invalid choice.

    A valid pick is remembered (``LAST_STAGES``); an invalid one keeps the last valid stages.
    """
    picked = tuple(s for s in FPN_STAGES if s in (state.get(KEY_STAGES) or ()))  # type: ignore[operator]
    try:
        stages = validate_stages(picked)
    except ValueError:
        kept = tuple(state.get(LAST_STAGES) or DEFAULT_STAGES)  # type: ignore[arg-type]
        return kept, (
            f"Pick a contiguous run of two or more stages (e.g. c3, c4, c5); "
            f"{', '.join(picked) or 'nothing'} is not. Still using {', '.join(kept)}."
        )
    state[LAST_STAGES] = stages
    return stages, None


def settings_from_state(
    state: MutableMapping[str, object], table: Mapping[str, Control], image: ImageChoice | None
) -> Settings:
    """The settings the widgets hold (every control has a value: defaults are seeded first)."""
    value = {key: state.get(key, c.default) for key, c in table.items()}
    stages, _ = stages_from_state(state)
    config = PyramidConfig(
        out_channels=int(value[KEY_OUT_CHANNELS]),  # type: ignore[call-overload]
        stages=stages,
        upsample=str(value[KEY_UPSAMPLE]),
        merge=str(value[KEY_MERGE]),
        p6=bool(value[KEY_P6]),
        weights=str(value[KEY_WEIGHTS]),
        device=str(value[KEY_DEVICE]),
    )
    style = MapStyle(
        aggregation=str(value[KEY_AGGREGATION]),
        colormap=str(value[KEY_COLORMAP]),
        alpha=float(value[KEY_ALPHA]),  # type: ignore[arg-type]
        scope=str(value[KEY_SCOPE]),
    )
    return Settings(
        image=image,
        config=config,
        style=style,
        size=int(value[KEY_SIZE]),  # type: ignore[call-overload]
        export_scale=int(value[KEY_EXPORT_SCALE]),  # type: ignore[call-overload]
    )
