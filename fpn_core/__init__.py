"""FPN Explorer's engine: ResNet-50 + Feature Pyramid Network, with no streamlit anywhere.

Typical use::

    from fpn_core import PyramidConfig, build_pyramid, run_pyramid, load_image
    model = build_pyramid(PyramidConfig(out_channels=128, weights="random"))
    out = run_pyramid(model, load_image("photo.jpg"))
    out.levels["p4"].shape   # (1, 128, H/16, W/16)
"""

__version__ = "0.1.0"

from .backbone import RESNET50_FEATURE_INFO, ResNetBackbone
from .detection import (
    DETECTOR_NAMES,
    DETECTORS,
    Detections,
    build_detector,
    detect,
    filter_detections,
    run_detector_features,
    run_heads,
)
from .device import available_devices, resolve_device
from .fpn import ABLATIONS, MERGE_MODES, UPSAMPLE_MODES, LevelSteps, PyramidFPN
from .images import ImageError, load_image
from .levels import DEFAULT_STAGES, FPN_STAGES, FeatureInfo, level_of, stage_of, stride_of
from .pyramid import (
    DEFAULT_SIZE,
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

__all__ = [
    "ABLATIONS",
    "DEFAULT_SIZE",
    "DEFAULT_STAGES",
    "DETECTORS",
    "DETECTOR_NAMES",
    "FPN_STAGES",
    "MERGE_MODES",
    "RESNET50_FEATURE_INFO",
    "UPSAMPLE_MODES",
    "WEIGHT_CHOICES",
    "BackboneResult",
    "Detections",
    "FeatureInfo",
    "FpnResult",
    "ImageError",
    "LevelSteps",
    "Provenance",
    "Pyramid",
    "PyramidConfig",
    "PyramidFPN",
    "PyramidOutput",
    "ResNetBackbone",
    "WeightsError",
    "assemble_pyramid",
    "available_devices",
    "build_backbone",
    "build_detector",
    "build_fpn",
    "build_pyramid",
    "count_flops",
    "count_parameters",
    "detect",
    "filter_detections",
    "level_of",
    "load_image",
    "resolve_device",
    "run_backbone",
    "run_detector_features",
    "run_fpn",
    "run_heads",
    "run_pyramid",
    "stage_of",
    "stride_of",
    "with_fpn",
]
