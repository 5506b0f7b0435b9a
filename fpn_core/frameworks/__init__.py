"""Checkpoints of mmdetection and detectron2, read safely and shown as FPN Explorer's ResNet-50 + FPN.

Neither framework installs here (mmcv compiles C++ ops, detectron2 is not on PyPI), so their
files are read directly:

>>> from fpn_core.frameworks import read_framework_checkpoint, build_framework_pyramid
>>> record = read_framework_checkpoint("retinanet_r50_fpn_1x_coco.pth")       # doctest: +SKIP
>>> record.framework, record.stages, record.extra.describe()                  # doctest: +SKIP
('mmdetection', ('c3', 'c4', 'c5'), 'P6/P7 convolutions from C5, no ReLU before P7')
>>> pyramid = build_framework_pyramid(record)                                 # doctest: +SKIP

- :mod:`.read`: open a file (``torch.load(weights_only=True)``, mmap for zip files, or the
  numpy-only unpickler of :mod:`.safe_pickle`), tell the framework, dispatch.
- :mod:`.mmdet`, :mod:`.detectron2`: each framework's key names and conventions.
- :mod:`.record`: the neutral :class:`FrameworkCheckpoint`, :class:`Conventions`, overrides and
  the ``<stem>.conventions.json`` sidecar.
- :mod:`.backbones`: ResNet-50 or not (names the depth or type found).
- :mod:`.build`: the ``Pyramid``, with the conventions turned into module settings.
"""

from __future__ import annotations

from .build import P6P7, build_framework_pyramid, build_framework_resnet, rgb_normalization
from .read import (
    framework_of,
    is_framework_checkpoint,
    load_checkpoint_object,
    read_framework_checkpoint,
    sniff_framework,
)
from .record import (
    DETECTRON2,
    FRAMEWORKS,
    MMDETECTION,
    SIDECAR_SUFFIX,
    ConventionOverrides,
    Conventions,
    ExtraLevels,
    FrameworkCheckpoint,
    FrameworkError,
    parse_input_format,
    parse_yes_no,
    read_sidecar,
    sidecar_path,
)

__all__ = [
    "DETECTRON2",
    "FRAMEWORKS",
    "MMDETECTION",
    "P6P7",
    "SIDECAR_SUFFIX",
    "ConventionOverrides",
    "Conventions",
    "ExtraLevels",
    "FrameworkCheckpoint",
    "FrameworkError",
    "build_framework_pyramid",
    "build_framework_resnet",
    "framework_of",
    "is_framework_checkpoint",
    "load_checkpoint_object",
    "parse_input_format",
    "parse_yes_no",
    "read_framework_checkpoint",
    "read_sidecar",
    "rgb_normalization",
    "sidecar_path",
    "sniff_framework",
]
