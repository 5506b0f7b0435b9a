"""The export bundle: every map, overlay and a slide of one analysis, with its metadata.

:func:`build_export` turns a :class:`~fpn_core.pyramid.PyramidOutput` into a mapping of file
names to bytes, so the dashboard can offer it as a download and the CLI can write it to a
folder (:func:`write_export`) or a zip (:func:`zip_export`). No streamlit here.

The bundle is deterministic: the same image, configuration and settings give the same
bytes (PNGs carry no software or date stamp, the zip has fixed timestamps and sorted
names). Timings are the one thing that changes from run to run; ``timings=False`` leaves
them out of ``metadata.json``.

Layout::

    input.png           the resized image the network saw
    maps/<name>.png     the channel-reduced map of every stage (c1..c5) and level (p*)
    overlays/<name>.png each map blended over the input
    slide.png           a 16:9 slide: the input and one overlay per pyramid level
    detections.png      only when detections are given: boxes colored by the level that found them
    metadata.json       configuration, weights, shapes, statistics, timings, versions
                        (and ``"detections"`` when given)
    receptive/, contributions/  only when a point is given: ERF per stage and level, radii,
                        where each stage dominates each level, stage shares
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import matplotlib
import numpy as np
import torch
import torchvision
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from . import __version__
from .detection import Detections
from .detection.figure import detection_figure
from .figures import figure_to_png, map_figure, overlay_figure, slide_figure
from .levels import stride_of
from .maps import MapRange, MapStyle, aggregate_channels, map_ranges, map_stats
from .point import PointAnalysis, point_figures
from .pyramid import PyramidOutput

__all__ = [
    "EXPORT_SCALES",
    "EXPORT_STYLE",
    "METADATA_NAME",
    "build_export",
    "check_export_settings",
    "write_export",
    "zip_export",
]

METADATA_NAME = "metadata.json"
#: Resolution multipliers offered for the PNGs (1 = 100 dpi).
EXPORT_SCALES: tuple[int, ...] = (1, 2, 3)
#: The style of a bundle when none is given: the CLI's defaults (``--cmap jet``).
EXPORT_STYLE = MapStyle(colormap="jet")
_DPI = 100
#: Any date before 1980 is invalid in a zip; this fixed one makes archives reproducible.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def build_export(
    out: PyramidOutput,
    style: MapStyle = EXPORT_STYLE,
    *,
    scale: float = 1.0,
    timings: bool = True,
    source: str | None = None,
    detections: Detections | None = None,
    point: PointAnalysis | None = None,
) -> dict[str, bytes]:
    """Render one analysis into the files of an export bundle.

    Args:
        out: The analysis, from ``run_pyramid``.
        style: How maps become pictures (checked when it was made): the channel aggregation,
            the color map of maps, overlays and slide, the overlays' alpha, and the scope of the
            color ranges (``"per-level"``: each map its own; ``"shared"``: one for all stages and
            one for all levels, so their strengths compare). Default :data:`EXPORT_STYLE`.
        scale: Resolution multiplier of the PNGs (1 = 100 dpi).
        timings: Include the measured milliseconds in ``metadata.json``. Timings change
            from run to run; leave them out for byte-identical bundles.
        source: Where the image came from (e.g. its file name), recorded in the metadata.
        detections: A detector's result on the same image (``fpn_core.detection.detect``): adds
            ``detections.png`` and a ``"detections"`` entry to the metadata. Without it the
            bundle is exactly what it was before detection existed.
        point: ``fpn_core.point.analyse_point`` on the same image: adds ``receptive/*.png``
            (ERF per stage and level, radii plot), ``contributions/*.png`` (composite per
            level, shares) and a ``"point"`` entry to the metadata. Without it the bundle is
            unchanged.

    Returns:
        File name (POSIX, relative) -> file bytes, in the layout of the module docstring.

    Raises:
        ValueError: If ``scale`` is out of range.
    """
    _check_scale(scale)
    colormap, alpha, aggregation, scope = style.colormap, style.alpha, style.aggregation, style.scope
    features = {**out.stages, **out.levels}
    reduced = {name: aggregate_channels(t, aggregation) for name, t in features.items()}
    ranges = {
        **map_ranges({n: reduced[n] for n in out.stages}, scope),
        **map_ranges({n: reduced[n] for n in out.levels}, scope),
    }
    weights = out.provenance.summary()
    bar_label = f"channel {aggregation} activation"

    files: dict[str, bytes] = {"input.png": _array_png(out.image)}
    for name, tensor in features.items():
        caption = _caption(name, tensor)
        files[f"maps/{name}.png"] = _figure_png(
            map_figure(
                reduced[name],
                title=f"{caption}\nchannel {aggregation}",
                rng=ranges[name],
                colormap=colormap,
                colorbar_label=bar_label,
            ),
            scale,
        )
        files[f"overlays/{name}.png"] = _figure_png(
            overlay_figure(
                out.image,
                reduced[name],
                title=f"{caption}\n{weights}",
                rng=ranges[name],
                alpha=alpha,
                colormap=colormap,
                colorbar_label=bar_label,
            ),
            scale,
        )
    level_names = list(out.levels)
    files["slide.png"] = _figure_png(
        slide_figure(
            out.image,
            [(f"{n} (stride {stride_of(n)})", reduced[n]) for n in level_names],
            rngs=[ranges[n] for n in level_names],
            alpha=alpha,
            colormap=colormap,
            suptitle=f"FPN levels, width {out.config.out_channels}, channel {aggregation}: {weights}",
            colorbar_label=bar_label,
        ),
        scale,
    )
    settings = {
        "colormap": colormap,
        "alpha": alpha,
        "aggregation": aggregation,
        "scope": scope,
        "scale": scale,
        "dpi": _DPI * scale,
        "timings": timings,
    }
    meta = _metadata(out, features, reduced, ranges, settings, source)
    if detections is not None:
        files["detections.png"] = _figure_png(detection_figure(out.image, detections), scale)
        meta["detections"] = detections.as_dict()
    if point is not None:
        files.update((name, _figure_png(fig, scale)) for name, fig in point_figures(point).items())
        meta["point"] = {**point.summary(), "fields": point.fields()}
    files[METADATA_NAME] = (json.dumps(_finite(meta), indent=2, allow_nan=False) + "\n").encode("utf-8")
    return dict(sorted(files.items()))


def check_export_settings(*, colormap: str, alpha: float, aggregation: str, scope: str, scale: float) -> MapStyle:
    """Refuse export settings :func:`build_export` cannot use, before any work is done.

    Returns:
        The settings' :class:`~fpn_core.maps.MapStyle`.

    Raises:
        ValueError: naming the bad setting and its value.
    """
    style = MapStyle(aggregation=aggregation, colormap=colormap, alpha=alpha, scope=scope)
    _check_scale(scale)
    return style


def _check_scale(scale: float) -> None:
    """Refuse a resolution multiplier outside ``(0, max(EXPORT_SCALES)]``.

    Raises:
        ValueError: naming ``scale`` and its value.
    """
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and 0 < scale <= max(EXPORT_SCALES)):
        raise ValueError(f"scale must be above 0 and at most {max(EXPORT_SCALES)}, got {scale!r}")


def _caption(name: str, tensor: Tensor) -> str:
    """``"p4 · stride 16 · 1×256×16×16 · width 256"``: what a map is, for titles."""
    shape = "×".join(str(s) for s in tensor.shape)
    return f"{name} · stride {stride_of(name)} · {shape} · width {tensor.shape[1]}"


def _metadata(
    out: PyramidOutput,
    features: Mapping[str, Tensor],
    reduced: Mapping[str, np.ndarray],
    ranges: Mapping[str, MapRange],
    settings: dict,
    source: str | None,
) -> dict:
    h, w = out.image.shape[:2]
    return {
        "fpn_explorer_export": 1,
        "input": {
            "source": source,
            "height": h,
            "width": w,
            "sha256": hashlib.sha256(np.ascontiguousarray(out.image).tobytes()).hexdigest(),
        },
        "config": out.config.as_dict(),
        "weights": out.provenance.as_dict(),
        "device": out.device,
        "shapes": {name: list(t.shape) for name, t in features.items()},
        "strides": {name: stride_of(name) for name in features},
        "stats": {name: map_stats(t) for name, t in features.items()},
        "map_ranges": {name: {"vmin": ranges[name].vmin, "vmax": ranges[name].vmax} for name in reduced},
        "timings_ms": dict(out.timings_ms) if settings["timings"] else None,
        "repeats": out.repeats if settings["timings"] else None,
        "notices": list(out.notices),
        "export": settings,
        "versions": {
            "fpn_core": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "numpy": np.__version__,
            "matplotlib": matplotlib.__version__,
        },
    }


def _finite(value: object) -> object:
    """Non-finite floats become None, so the JSON stays valid (``NaN`` is not JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _figure_png(fig: Figure, scale: float) -> bytes:
    return figure_to_png(fig, scale=scale, dpi=_DPI)


def _array_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------- writing


def _safe_name(name: str) -> PurePosixPath:
    """A bundle file name as a relative path that cannot leave the export folder."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name:
        raise ValueError(f"export file names must be relative paths inside the bundle, got {name!r}")
    return path


def write_export(files: Mapping[str, bytes], out_dir: Path | str) -> list[Path]:
    """Write a bundle into a folder (created if needed); existing files of the same name are replaced.

    Args:
        files: File name -> bytes, from :func:`build_export`.
        out_dir: The folder.

    Returns:
        The paths written, sorted by name.

    Raises:
        ValueError: If a file name would leave ``out_dir``.
        OSError: If the folder or a file cannot be written.
    """
    out_dir = Path(out_dir)
    written = []
    for name in sorted(files):
        path = out_dir.joinpath(*_safe_name(name).parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])
        written.append(path)
    return written


def zip_export(files: Mapping[str, bytes]) -> bytes:
    """A deterministic zip of a bundle: sorted names, fixed timestamps and permissions.

    Args:
        files: File name -> bytes, from :func:`build_export`.

    Returns:
        The zip archive's bytes; identical files give identical bytes.

    Raises:
        ValueError: If a file name is not a relative path inside the bundle.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(str(_safe_name(name)), date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16  # rw-r--r--, not the process umask
            info.create_system = 3  # Unix, whatever machine wrote it
            archive.writestr(info, files[name])
    return buffer.getvalue()
