"""Cached loaders: the shared backbone, FPN modules, analyses, images and counts.

What is cached where, and why:

- ``get_backbone``: one ResNet-50 per (weights, device) for the whole process, shared by
  every session. Changing the FPN width never rebuilds it.
- ``get_backbone_result``: backbone activations per (image digest, size, weights, device), so FPN
  changes (width, stages, upsampling, merge, p6) only rerun the FPN.
- ``get_fpn`` / ``get_fpn_result``: FPN modules per configuration and FPN results per
  (image, size, configuration), so map settings (color map, alpha, aggregation, scope)
  rerun no model at all.

Every cached function takes one key, a frozen dataclass (or a string) naming what the result
depends on; the inputs it is computed from follow with a leading underscore, which streamlit
leaves out of the key. The caches of anything built with a model register themselves
(:func:`model_cache`), so *Try again* clears them all with their own ``clear()``.

Everything returned here is shared between sessions: treat it as read-only.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import streamlit as st
import torch
from streamlit.runtime.caching.cache_utils import CachedFunc

from fpn_core import (
    FPN,
    BackboneResult,
    FpnResult,
    Pyramid,
    PyramidConfig,
    PyramidOutput,
    ResNetBackbone,
    available_devices,
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
from fpn_core.contributions import Contributions, stage_contributions
from fpn_core.deck import build_deck, run_lesson
from fpn_core.detection import (
    Detections,
    Detector,
    DetectorFeatures,
    build_detector,
    detector_spec,
    run_detector_features,
    run_heads,
)
from fpn_core.export import build_export, zip_export
from fpn_core.frameworks import build_framework_pyramid, read_framework_checkpoint
from fpn_core.images import list_samples, load_image
from fpn_core.levels import FeatureInfo
from fpn_core.maps import MapRange, MapStyle, aggregate_channels, channel_grid, map_ranges, overlay
from fpn_core.point import PointAnalysis
from fpn_core.receptive import ErfResult, erf_maps
from fpn_core.report import StepTable, step_table
from fpn_core.scales import Box, make_scales_image
from fpn_core.weights import Provenance, WeightsError, operator_file_from_env

ANALYSIS_TTL_S = 3600


# ------------------------------------------------------------------------ operator flag


def operator_weights_path(argv: list[str] | None = None) -> str | None:
    """The ``--weights PATH`` given after ``streamlit run dashboard.py --``, if any.

    Args:
        argv: the arguments to parse (default ``sys.argv[1:]``); unknown ones are ignored.

    Returns:
        The path, or None when the flag is absent.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--weights", default=None)
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return known.weights or None


def operator_backbone_file() -> str | None:
    """The operator's own backbone file: ``FPN_WEIGHTS`` if set, else ``--weights PATH``, else None.

    Read when a backbone is built, not part of the cache keys: a file named later is picked up
    by *Try again* (which clears every model cache), so the activations cached by weights name
    never meet another backbone's.
    """
    return operator_file_from_env() or operator_weights_path()


# ------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class LoadedImage:
    """An RGB uint8 image with a content digest (keys the analysis caches)."""

    image: np.ndarray
    digest: str


def digest_of(data: bytes | np.ndarray) -> str:
    """A short content hash of bytes or an array (shape included)."""
    h = hashlib.blake2b(digest_size=12)
    if isinstance(data, np.ndarray):
        h.update(repr((data.shape, str(data.dtype))).encode())
        h.update(np.ascontiguousarray(data).data)
    else:
        h.update(data)
    return h.hexdigest()


@st.cache_resource(show_spinner=False, max_entries=8)
def load_sample(path: str) -> LoadedImage:
    """A bundled sample image, decoded once per process (read-only)."""
    data = Path(path).read_bytes()
    image = load_image(data, max_side=1024, max_bytes=None)
    image.setflags(write=False)
    return LoadedImage(image, digest_of(data))


@st.cache_resource(show_spinner=False)
def load_scales() -> LoadedImage:
    """The synthetic "scales" image (one target shape at 32, 64, 128 and 256 px)."""
    image = make_scales_image().image
    image.setflags(write=False)
    return LoadedImage(image, "scales-" + digest_of(image))


@st.cache_resource(show_spinner=False)
def scales_boxes() -> tuple[Box, ...]:
    """The boxes of the synthetic "scales" image (one per drawn shape, smallest first)."""
    return make_scales_image().boxes


#: The sidebar thumbnail's width in pixels.
THUMBNAIL_WIDTH = 220


@st.cache_resource(show_spinner=False, max_entries=16)
def thumbnail(digest: str, _image: np.ndarray) -> np.ndarray:
    """The sidebar's small copy of an image (read-only; the full image is not re-encoded every run)."""
    h, w = _image.shape[:2]
    width = THUMBNAIL_WIDTH
    small = cv2.resize(_image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    small.setflags(write=False)
    return small


@st.cache_data(show_spinner=False, ttl=600)
def sample_names() -> dict[str, str]:
    """Sample display name -> path, as strings."""
    return {name: str(path) for name, path in list_samples().items()}


# ------------------------------------------------------------------------------- models
# Every cache of something computed with a model registers here, so "Try again" clears them
# with streamlit's own ``clear()`` (a new cache cannot be forgotten in a hand-kept list).

#: The cached functions whose results depend on a model (filled by :func:`model_cache`).
MODEL_CACHES: list[CachedFunc] = []

F = TypeVar("F", bound=Callable[..., object])


def model_cache(*, data: bool = False, **options: object) -> Callable[[F], F]:
    """``st.cache_resource`` (``st.cache_data`` with ``data=True``) that also registers the
    function in :data:`MODEL_CACHES`, for :func:`clear_model_caches`.

    Args:
        data: cache pickled copies (``st.cache_data``) instead of the shared object.
        options: the decorator's options (``max_entries``, ``ttl``...); ``show_spinner`` is off.
    """
    decorator = (st.cache_data if data else st.cache_resource)(show_spinner=False, **options)  # type: ignore[call-overload]

    def register(fn: F) -> F:
        cached = decorator(fn)
        MODEL_CACHES.append(cached)
        return cached

    return register


def clear_model_caches() -> None:
    """Forget every model and everything computed with one, so a newly placed file is used."""
    for cached in MODEL_CACHES:
        cached.clear()


@dataclass(frozen=True)
class ModelKey:
    """Which shared ResNet-50: its weights (one of ``fpn_core.WEIGHT_CHOICES``) and device."""

    weights: str
    device: str


@dataclass(frozen=True)
class BackboneKey:
    """What a backbone pass depends on: image content, input size, weights and device."""

    digest: str
    size: int
    weights: str
    device: str

    @property
    def model(self) -> ModelKey:
        return ModelKey(self.weights, self.device)


@dataclass(frozen=True)
class AnalysisKey:
    """What a whole analysis depends on: the image, the input size and the pyramid configuration."""

    digest: str
    size: int
    config: PyramidConfig

    @property
    def backbone(self) -> BackboneKey:
        return BackboneKey(self.digest, self.size, self.config.weights, str(self.config.device))


def is_folder_weights(weights: str) -> bool:
    """Whether a weights choice names a file of the models folder (``file:<name>``, see ``ui.models``)."""
    return weights.startswith("file:")


@dataclass(frozen=True)
class FileKey:
    """A models-folder file's pyramid: ``model.weights`` is ``file:<name>``; ``optimize`` folds BatchNorm."""

    model: ModelKey
    optimize: bool = True


@model_cache(max_entries=4)
def get_file_pyramid(key: FileKey) -> Pyramid:
    """The backbone and FPN of a models-folder checkpoint (``key.model.weights`` is ``file:<name>``), as the
    file has them: its stages, width, extra levels and norm layers, labelled as the user's file.

    A torchvision detector's file goes through ``build_pyramid``; an mmdetection or detectron2
    file through ``build_framework_pyramid`` with its conventions (and its sidecar's).

    Raises:
        WeightsError: the name is no longer in the folder, or the file cannot be read.
    """
    from ui import models  # ui.models registers its listing here: imported when first needed

    info = models.info_of(key.model.weights)
    if info is None:
        raise WeightsError(
            f"{key.model.weights.removeprefix('file:')} is not in the models folder {models.models_dir()}; "
            "press Try again to rescan it"
        )
    config = PyramidConfig(weights=str(info.path), device=key.model.device, optimize=key.optimize)
    if models.is_framework_info(info):
        return build_framework_pyramid(read_framework_checkpoint(info.path), config)
    return build_pyramid(config)


def file_config(config: PyramidConfig) -> PyramidConfig:
    """``config`` with the layout a models-folder file's FPN was trained with (stages, width, extra
    level); the teaching options (upsampling, merge, ablation) stay the sidebar's. Others unchanged."""
    if not is_folder_weights(config.weights):
        return config
    built = get_file_pyramid(FileKey(ModelKey(config.weights, str(config.device)))).config
    return dataclasses.replace(config, stages=built.stages, out_channels=built.out_channels, p6=built.p6)


@model_cache(max_entries=4)
def get_backbone(key: ModelKey, _progress: Callable[[int, int], None] | None = None) -> ResNetBackbone:
    """The shared ResNet-50 for ``key``, built once per process (``_progress``: download progress)."""
    if is_folder_weights(key.weights):
        return get_file_pyramid(FileKey(key)).backbone
    return build_backbone(key.weights, device=key.device, progress=_progress, operator_file=operator_backbone_file())


@model_cache(max_entries=2)
def get_plain_backbone(key: ModelKey) -> ResNetBackbone:
    """The same backbone without BatchNorm folding or channels_last, to show what they save."""
    if is_folder_weights(key.weights):
        return get_file_pyramid(FileKey(key, optimize=False)).backbone
    return build_backbone(
        key.weights, device=key.device, optimize=False, allow_download=False, operator_file=operator_backbone_file()
    )


def time_plain_backbone(key: ModelKey, image: np.ndarray, size: int, repeats: int) -> float:
    """Median milliseconds of the plain (unoptimized) backbone on ``image``, after one warm-up run."""
    return run_backbone(get_plain_backbone(key), image, size=size, repeats=repeats, warmup=1).total_ms


@model_cache(max_entries=16)
def get_fpn(config: PyramidConfig, _backbone: ResNetBackbone) -> tuple[FPN, str, bool]:
    """The FPN module for one configuration (weights and device are part of it).

    For a models-folder file: the file's trained FPN with the configuration's upsampling, merge
    and ablation (a shallow copy sharing its trained modules).
    """
    if is_folder_weights(config.weights):
        built = get_file_pyramid(FileKey(ModelKey(config.weights, str(config.device))))
        fpn = copy.copy(built.fpn)
        fpn.upsample, fpn.merge, fpn.ablation = config.upsample, config.merge, config.ablation
        return fpn, built.provenance.fpn, built.provenance.fpn_pretrained
    return build_fpn(config, _backbone)


def get_pyramid(config: PyramidConfig, backbone: ResNetBackbone) -> Pyramid:
    """Backbone plus the cached FPN for ``config``, with the combined provenance."""
    fpn, desc, trained = get_fpn(config, backbone)
    pyramid = with_fpn(backbone, fpn, config, desc, trained)
    if is_folder_weights(config.weights):  # the file's levels (p7 included, which PyramidConfig does not name)
        levels = get_file_pyramid(FileKey(ModelKey(config.weights, str(config.device)))).level_info
        pyramid.level_info = FeatureInfo(list(levels)[:1] if config.ablation == "finest-only" else list(levels))
    return pyramid


@model_cache(max_entries=6, ttl=ANALYSIS_TTL_S)
def get_backbone_result(key: BackboneKey, _backbone: ResNetBackbone, _image: np.ndarray) -> BackboneResult:
    """Backbone activations c1..c5 of one image at one input size."""
    return run_backbone(_backbone, _image, size=key.size)


@model_cache(max_entries=12, ttl=ANALYSIS_TTL_S)
def get_fpn_result(key: AnalysisKey, _fpn: FPN, _stages: BackboneResult) -> FpnResult:
    """The FPN levels and steps of one image for one configuration."""
    return run_fpn(_fpn, _stages.stages, key.config)


@model_cache(data=True, max_entries=16)
def get_flops(key: AnalysisKey, _model: Pyramid, _image: np.ndarray) -> dict[str, int]:
    """FLOPs per step of one analysis."""
    return count_flops(_model, _image, size=key.size)


# ----------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class BackbonePass:
    """The backbone alone on the current image (pages that show no FPN level need no more).

    Attributes:
        key: what it was computed from.
        model: the shared ResNet-50 (read-only).
        output: the backbone pass (resized image, c1..c5).
    """

    key: BackboneKey
    model: ResNetBackbone
    output: BackboneResult

    @property
    def backbone_key(self) -> BackboneKey:
        return self.key

    @property
    def notices(self) -> list[str]:
        return list(self.output.notices)


@dataclass(frozen=True)
class Analysis:
    """Everything a page needs about the current image and configuration (read-only).

    Attributes:
        key: what it was computed from (keys every cache built on it).
        model: backbone + FPN with the combined provenance.
        output: the engine's analysis (the backbone and FPN passes, configuration, provenance).
    """

    key: AnalysisKey
    model: Pyramid
    output: PyramidOutput

    @property
    def backbone_key(self) -> BackboneKey:
        return self.key.backbone

    @property
    def notices(self) -> list[str]:
        """Anything the user should know about how this analysis ran."""
        return self.output.notices


def _named_device(config: PyramidConfig) -> PyramidConfig:
    """``config`` with the best device present named, so that it keys the caches."""
    return config if config.device is not None else dataclasses.replace(config, device=available_devices()[0])


def get_analysis(
    config: PyramidConfig,
    image: np.ndarray,
    digest: str,
    size: int,
    progress: Callable[[int, int], None] | None = None,
) -> Analysis:
    """Run (or fetch from the caches) the backbone and FPN for one image and configuration."""
    key = AnalysisKey(digest, int(size), file_config(_named_device(config)))
    backbone = get_backbone(key.backbone.model, progress)
    model = get_pyramid(key.config, backbone)
    stages = get_backbone_result(key.backbone, backbone, image)
    fpn = get_fpn_result(key, model.fpn, stages)
    return Analysis(key, model, PyramidOutput.compose(model, stages, fpn, repeats=1))


def get_backbone_pass(config: PyramidConfig, image: np.ndarray, digest: str, size: int) -> BackbonePass:
    """Run (or fetch) only the backbone pass: what an FPN change does not touch."""
    key = AnalysisKey(digest, int(size), file_config(_named_device(config))).backbone
    backbone = get_backbone(key.model)
    return BackbonePass(key, backbone, get_backbone_result(key, backbone, image))


# ------------------------------------------------------------------------- screen images
# Small numpy results per (analysis key, feature group, map style): a sidebar change that a
# page does not use finds them here, and one it does use recomputes only what depends on it.


@dataclass(frozen=True)
class MapsKey:
    """One group of channel-reduced maps.

    Attributes:
        source: the analysis (or backbone pass) the features come from.
        group: which features, e.g. ``"levels"``, ``"stages"`` or ``"p3.steps"``.
        aggregation: the channel aggregation (``fpn_core.maps.CHANNEL_AGGREGATIONS``).
    """

    source: AnalysisKey | BackboneKey
    group: str
    aggregation: str


@dataclass(frozen=True)
class RangesKey:
    """The color ranges of one group of maps: each its own, or one shared (``scope``)."""

    maps: MapsKey
    scope: str


@dataclass(frozen=True)
class OverlaysKey:
    """One group of maps blended over the input image in one map style."""

    maps: MapsKey
    style: MapStyle


@dataclass(frozen=True)
class MosaicsKey:
    """The ``k`` most active channels of every stage of one backbone pass."""

    backbone: BackboneKey
    k: int


def _read_only(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for array in arrays.values():
        array.setflags(write=False)
    return arrays


@model_cache(max_entries=48, ttl=ANALYSIS_TTL_S)
def aggregated_maps(key: MapsKey, _features: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Each feature of ``key.group`` collapsed over channels (2-D float maps, read-only).

    ``_features``: name -> (1, C, H, W) tensor.
    """
    return _read_only({name: aggregate_channels(t, key.aggregation) for name, t in _features.items()})


@model_cache(max_entries=48, ttl=ANALYSIS_TTL_S)
def color_ranges(key: RangesKey, _maps: Mapping[str, np.ndarray]) -> dict[str, MapRange]:
    """Color ranges of one group's maps: each its own, or one shared (``key.scope``)."""
    return map_ranges(_maps, key.scope)


@model_cache(max_entries=8, ttl=ANALYSIS_TTL_S)
def channel_mosaics(key: MosaicsKey, _stages: Mapping[str, torch.Tensor]) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Per stage, the ``key.k`` most active channels as one mosaic of [0, 1] tiles, and their indices."""
    out = {name: channel_grid(t, k=key.k, cols=4) for name, t in _stages.items()}
    for mosaic, _ in out.values():
        mosaic.setflags(write=False)
    return out


@model_cache(max_entries=32, ttl=ANALYSIS_TTL_S)
def overlay_images(
    key: OverlaysKey, _image: np.ndarray, _maps: Mapping[str, np.ndarray], _ranges: Mapping[str, MapRange]
) -> dict[str, np.ndarray]:
    """Each map of the group blended over the network's input image (RGB uint8, read-only)."""
    style = key.style
    return _read_only(
        {
            name: overlay(_image, m, rng=_ranges[name], alpha=style.alpha, colormap=style.colormap)
            for name, m in _maps.items()
        }
    )


# ------------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class TimingKey:
    """One measurement: the analysis measured, timed runs per median, and how many times
    "Measure again" was pressed in this session."""

    analysis: AnalysisKey
    repeats: int
    measurement: int


@model_cache(max_entries=8, ttl=ANALYSIS_TTL_S)
def timing_report(key: TimingKey, _analysis: Analysis, _image: np.ndarray) -> StepTable:
    """One measurement per key: a rerun for another reason (a sidebar control the Timing page
    does not use) shows it again instead of measuring anew."""
    return time_pyramid(_analysis, _image, key.repeats)


def time_pyramid(analysis: Analysis, image: np.ndarray, repeats: int, warmup: int = 1) -> StepTable:
    """Time the backbone and the FPN afresh (``warmup`` untimed runs, median of ``repeats``).

    Args:
        analysis: the cached analysis (its model is reused, never rebuilt; its key gives the size).
        image: the RGB uint8 input.
        repeats: timed runs.
        warmup: untimed runs before them.
    """
    model = analysis.model
    out = run_pyramid(model, image, size=analysis.key.size, repeats=repeats, warmup=warmup)
    flops = get_flops(analysis.key, model, image)
    return step_table(model, out, flops, count_parameters(model))


# ---------------------------------------------------------------------------- detection
# One detector per (name, weights, device) for the whole process; its backbone + FPN pass per
# (image, input size, detector); its heads on that pass. A new score threshold only re-filters
# the cached heads (``fpn_core.detection.filter_detections``), so the slider reruns no network.


@dataclass(frozen=True)
class DetectorKey:
    """Which detector: a key of ``fpn_core.detection.DETECTORS`` and its weights (``"coco"``...), or a models
    folder's ``file:<name>`` and the file's path; and the device."""

    name: str
    weights: str
    device: str


@dataclass(frozen=True)
class DetectionKey:
    """What a detector's pass depends on: the image content, the input size and the detector.

    Attributes:
        digest: the image's content hash.
        size: the long side of the network input, or None for the detector's own 800/1333.
        detector: the detector.
    """

    digest: str
    size: int | None
    detector: DetectorKey


@dataclass(frozen=True)
class DetectorPassKey:
    """A detector's pass, with the provenance of the detector that ran it: a detector rebuilt
    after a checkpoint was placed never meets the passes of the untrained one."""

    detection: DetectionKey
    weights: Provenance


@dataclass(frozen=True)
class HeadsKey:
    """The heads on one pass, keeping every detection that scores above ``min_score``."""

    features: DetectorPassKey
    min_score: float | None


@dataclass(frozen=True)
class DetectionChoice:
    """What the Detection page drew boxes for: the detector's pass, its heads' own threshold and the slider's.

    Kept in session state (``ui.settings.DETECTION_SHOWN``) so the Export page can add the same
    detections, recomputed from the caches (no tensors are kept in the session).
    """

    key: DetectionKey
    min_score: float | None
    score: float


@model_cache(max_entries=2)
def get_detector(key: DetectorKey, _progress: Callable[[int, int], None] | None = None) -> Detector:
    """The shared detector for ``key``, built once per process (read-only)."""
    if is_folder_weights(key.name):  # a models-folder file: kind, classes and layout read from it
        return build_detector(weights=key.weights, device=key.device, progress=_progress)
    operator_file = operator_file_from_env(detector_spec(key.name).env)  # read when built, as the backbone's
    return build_detector(
        key.name, weights=key.weights, device=key.device, progress=_progress, operator_file=operator_file
    )


@model_cache(max_entries=4, ttl=ANALYSIS_TTL_S)
def get_detector_features(key: DetectorPassKey, _detector: Detector, _image: np.ndarray) -> DetectorFeatures:
    """The detector's backbone + FPN pass on one image at one input size (the expensive part)."""
    return run_detector_features(_detector, _image, size=key.detection.size)


@model_cache(max_entries=8, ttl=ANALYSIS_TTL_S)
def get_detector_heads(key: HeadsKey, _detector: Detector, _features: DetectorFeatures) -> Detections:
    """The detector's heads on the cached pass: every detection scoring above ``key.min_score``."""
    return run_heads(_detector, _features, min_score=key.min_score)


def detections(
    key: DetectionKey,
    image: np.ndarray,
    *,
    min_score: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Detections:
    """Every detection of ``key``'s detector on ``image`` (cached), before a score threshold.

    Args:
        key: image, input size and detector (``image`` must be the image ``key.digest`` names).
        image: RGB uint8.
        min_score: the heads' own threshold (None: torchvision's 0.05; 0.0 keeps an untrained
            detector's boxes for the "noise" view).
        progress: weights download progress.
    """
    detector = get_detector(key.detector, progress)
    pass_key = DetectorPassKey(key, detector.provenance)
    features = get_detector_features(pass_key, detector, image)
    return get_detector_heads(HeadsKey(pass_key, min_score), detector, features)


# ------------------------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportKey:
    """One "Export all" bundle: the analysis, the map style, the resolution, the image's name and
    the Detection page's boxes (None: the bundle is byte for byte the one before detection existed)."""

    analysis: AnalysisKey
    style: MapStyle
    scale: int
    source: str | None
    detection: DetectionChoice | None = None


@dataclass(frozen=True)
class ExportBundle:
    """One "Export all" bundle: its files and the zip of them.

    Attributes:
        files: file name -> bytes, as ``fpn_core.export.build_export`` lays them out.
        archive: the deterministic zip of ``files``.
    """

    files: dict[str, bytes]
    archive: bytes


@model_cache(data=True, max_entries=4, ttl=ANALYSIS_TTL_S)
def get_export(key: ExportKey, _analysis: Analysis, _detections: Detections | None = None) -> ExportBundle:
    """Build (once per key) the export bundle; ``_detections`` are those ``key.detection`` names."""
    style = key.style
    files = build_export(
        _analysis.output,
        style,
        scale=float(key.scale),
        source=key.source,
        detections=_detections if key.detection is not None else None,
    )
    return ExportBundle(files, zip_export(files))


@dataclass(frozen=True)
class DeckKey:
    """One lecture deck: the analysis, the map style, the image's name, the Detection page's boxes
    (None: the detection slide says how to add them) and the Receptive fields page's point."""

    analysis: AnalysisKey
    style: MapStyle
    source: str | None
    detection: DetectionChoice | None
    erf: ErfKey


@model_cache(data=True, max_entries=2, ttl=ANALYSIS_TTL_S)
def get_deck(key: DeckKey, _analysis: Analysis, _image: np.ndarray, _detections: Detections | None = None) -> bytes:
    """Build (once per key) the lecture deck's ``.pptx`` bytes, reusing the cached ERF and stage contributions."""
    erf = get_erf(key.erf, _analysis.model, _image)
    contributions = get_contributions(_analysis.key, _analysis.model.fpn, _analysis.output.backbone)
    runs = run_lesson(
        _analysis.model,
        _analysis.output,
        _image,
        size=key.analysis.size,
        detections=_detections if key.detection is not None else None,
        point=PointAnalysis(erf, contributions),
    )
    return build_deck(_analysis.model, _analysis.output, runs, style=key.style, source=key.source)


# ---------------------------------------------------------------------- receptive fields
# The stage contributions do not depend on the point: one per analysis. The ERF maps do: one
# backward pass per stage and level for each (analysis, point, channel, magnitude), so the
# number inputs and clicks of the Receptive fields page find a point again once computed.


@model_cache(max_entries=8, ttl=ANALYSIS_TTL_S)
def get_contributions(key: AnalysisKey, _fpn: FPN, _stages: BackboneResult) -> Contributions:
    """Each stage's exact contribution to each level of one analysis (shares and strengths, no tensors)."""
    contributions = stage_contributions(_fpn, _stages.stages, key.config, keep_tensors=False)
    for per_stage in contributions.strength.values():
        _read_only(per_stage)
    return contributions


@dataclass(frozen=True)
class ErfKey:
    """What one point's effective receptive fields depend on.

    Attributes:
        analysis: the image, input size and pyramid configuration.
        point: ``(x, y)`` in pixels of the image as loaded.
        channel: the differentiated channel, or None for the sum over channels.
        magnitude: ``"abs"`` or ``"squared"`` aggregation of the gradient's colors.
    """

    analysis: AnalysisKey
    point: tuple[float, float]
    channel: int | None
    magnitude: str


@model_cache(max_entries=12, ttl=ANALYSIS_TTL_S)
def get_erf(key: ErfKey, _model: Pyramid, _image: np.ndarray) -> ErfResult:
    """The ERF of every stage and level at one point (read-only maps; about 9 MB at 512 px)."""
    result = erf_maps(_model, _image, key.point, size=key.analysis.size, channel=key.channel, magnitude=key.magnitude)
    _read_only(result.maps)
    result.image.setflags(write=False)
    return result
