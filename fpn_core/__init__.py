"""FPN Explorer's engine: ResNet-50 + Feature Pyramid Network, with no streamlit anywhere.

Typical use::

    from fpn_core import PyramidConfig, build_pyramid, run_pyramid, load_image
    model = build_pyramid(PyramidConfig(out_channels=128, weights="random"))
    out = run_pyramid(model, load_image("photo.jpg"))
    out.levels["p4"].shape   # (1, 128, H/16, W/16)

    from fpn_core import build_detector, detect   # the detectors, loaded on first use
    det = build_detector("faster-rcnn")
    dets = detect(det, load_image("photo.jpg"), score_threshold=0.5)

``import fpn_core`` does not load ``fpn_core.detection``: its names here are resolved on first
access (PEP 562 module ``__getattr__``).
"""

__version__ = "0.1.0"

import importlib

from .backbone import RESNET50_FEATURE_INFO, ResNetBackbone
from .device import available_devices
from .fpn import ABLATIONS, FPN, MERGE_MODES, UPSAMPLE_MODES
from .images import ImageError, load_image
from .levels import DEFAULT_STAGES, FPN_STAGES, FeatureInfo, stride_of
from .pyramid import (
    BackboneResult,
    FpnResult,
    Pyramid,
    PyramidConfig,
    PyramidOutput,
    assemble_pyramid,
    build_backbone,
    build_fpn,
    build_pyramid,
    count_flops,
    count_parameters,
    run_backbone,
    run_fpn,
    run_pyramid,
    with_fpn,
)
from .weights import WEIGHT_CHOICES, Provenance, WeightsError

#: Names of ``fpn_core.detection`` offered here, imported on first access.
_DETECTION_NAMES = ("Detections", "Detector", "build_detector", "detect", "detector_pyramid")

__all__ = [
    "ABLATIONS",
    "DEFAULT_STAGES",
    "FPN",
    "FPN_STAGES",
    "MERGE_MODES",
    "RESNET50_FEATURE_INFO",
    "UPSAMPLE_MODES",
    "WEIGHT_CHOICES",
    "BackboneResult",
    "FeatureInfo",
    "FpnResult",
    "ImageError",
    "Provenance",
    "Pyramid",
    "PyramidConfig",
    "PyramidOutput",
    "ResNetBackbone",
    "WeightsError",
    "assemble_pyramid",
    "available_devices",
    "build_backbone",
    "build_fpn",
    "build_pyramid",
    "count_flops",
    "count_parameters",
    "load_image",
    "run_backbone",
    "run_fpn",
    "run_pyramid",
    "stride_of",
    "with_fpn",
]
__all__ += list(_DETECTION_NAMES)


def __getattr__(name: str) -> object:
    if name in _DETECTION_NAMES:
        value = getattr(importlib.import_module(".detection", __name__), name)
        globals()[name] = value  # found directly from now on
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_DETECTION_NAMES})
