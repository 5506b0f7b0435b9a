"""Screen panels: numpy images with light titles and color bars; figures only for downloads.

On screen a map is an RGB array from ``fpn_core.maps`` (OpenCV/color-map code, a few ms),
shown with ``st.image``; its title is markdown and its color scale a small cached strip
with the values as text, so a screenshot of a panel still says what it shows. The annotated
matplotlib figure (``fpn_core.figures``) is drawn only when its PNG download is pressed, at
the sidebar's export resolution.
"""

from __future__ import annotations

import io
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np
import streamlit as st
from matplotlib.figure import Figure
from PIL import Image

from fpn_core.figures import figure_to_png
from fpn_core.maps import MapRange, colorize, normalize

#: Maps are enlarged with nearest neighbour to about this long side, so cells stay crisp
#: (a browser would blur a 16 × 16 map stretched over a column).
DISPLAY_LONG_SIDE = 384
#: PNG downloads are rendered at ``EXPORT_DPI * scale`` (1x = 100 dpi, as ``fpn_core.export``).
EXPORT_DPI = 100
_MISSING_BG = (241, 244, 248)
#: Screen images go to the browser as JPEG at this quality. ``st.image`` encodes a numpy array
#: anew on every rerun, at quality 100: three times the bytes for the browser to fetch and decode,
#: for no visible difference on screen (downloads are PNG).
SCREEN_JPEG_QUALITY = 90


@dataclass(frozen=True)
class ColorScale:
    """A panel's color scale: the color map, the value range, and what the values are."""

    colormap: str
    rng: MapRange
    label: str


@dataclass(frozen=True)
class Download:
    """A PNG download drawn on demand: ``make(*args, **kwargs)`` -> ``Figure``."""

    make: Callable[..., Figure]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    file_name: str = "figure.png"
    key: str | None = None


# ------------------------------------------------------------------------------ images


def enlarge(image: np.ndarray, size: int = DISPLAY_LONG_SIDE) -> np.ndarray:
    """Fit an image to about ``size`` for the screen: small ones grow by a whole factor
    (nearest neighbour, cells stay crisp), large ones shrink (area averaging)."""
    side = max(image.shape[:2])
    if side > 2 * size:
        scale = size / side
        return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    factor = max(1, size // side)
    if factor == 1:
        return image
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)


_encoded: dict[int, tuple[weakref.ref, bytes]] = {}
_encoded_lock = threading.Lock()


def screen_jpeg(image: np.ndarray) -> bytes:
    """JPEG bytes of an RGB uint8 screen image, encoded once per read-only array.

    The caches hand back the same read-only arrays on every rerun, so a rerun that does not
    change an image (a control the page does not use) encodes nothing, and the bytes, hence the
    image's URL, stay the same: the browser neither fetches nor decodes it again. A writable
    array may still change, so it is encoded each time.
    """
    key = id(image)
    with _encoded_lock:
        hit = _encoded.get(key)
    if hit is not None and hit[0]() is image:
        return hit[1]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(
        buffer, format="JPEG", quality=SCREEN_JPEG_QUALITY
    )
    data = buffer.getvalue()
    if not image.flags.writeable:
        ref = weakref.ref(image, lambda _, k=key: _forget(k))
        with _encoded_lock:
            _encoded[key] = (ref, data)
    return data


def _forget(key: int) -> None:
    with _encoded_lock:
        _encoded.pop(key, None)


@st.cache_resource(show_spinner=False, max_entries=192, ttl=3600)
def map_image(map_: np.ndarray, scale: ColorScale) -> np.ndarray:
    """A 2-D map colored by its scale and sized for the screen (RGB uint8, read-only).

    Cached by the map's content and the frozen scale, so a rerun that changes neither
    (a sidebar control the page does not use) only looks it up.
    """
    rgb = colorize(normalize(map_, scale.rng), scale.colormap)
    if np.isnan(map_).any():  # NaN marks gaps (e.g. between channel tiles): a neutral color
        rgb[np.isnan(map_)] = _MISSING_BG
    image = enlarge(rgb)
    image.setflags(write=False)
    return image


@lru_cache(maxsize=32)
def colorbar_strip(colormap: str, width: int = 256, height: int = 10) -> np.ndarray:
    """A horizontal color-map strip (RGB uint8), low values on the left; read-only."""
    ramp = np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))
    strip = colorize(ramp, colormap)
    strip.setflags(write=False)
    return strip


def _number(value: float) -> str:
    return f"{value:.3g}"


# ------------------------------------------------------------------------------ panels


def show_panel(
    image: np.ndarray | None,
    *,
    title: str,
    caption: str | None = None,
    scale: ColorScale | None = None,
    download: Download | None = None,
    export_scale: int = 1,
    missing: str = "",
) -> None:
    """One panel: a bold title, the image (or the reason it is missing), its color scale, a download.

    Args:
        image: RGB uint8, or None for a step that does not exist (``missing`` says why).
        title: what the panel shows (level, stride, shape ...), as markdown.
        caption: a line under the image.
        scale: the color scale, shown as a strip with its end values.
        download: the annotated figure offered as a PNG (drawn only when pressed).
        export_scale: resolution of the download (1x = 100 dpi).
        missing: text in place of a missing image.
    """
    st.markdown(f"**{title}**")
    if image is None:
        st.info(missing or "Not computed.", icon=":material/block:")
    else:
        st.image(screen_jpeg(image), width="stretch", caption=caption)
    if scale is not None:
        show_color_scale(scale)
    if download is not None:
        download_button(download, export_scale)


def show_color_scale(scale: ColorScale) -> None:
    """The color strip with its end values and what they measure."""
    st.image(screen_jpeg(colorbar_strip(scale.colormap)), width="stretch")
    st.caption(f"{_number(scale.rng.vmin)} ◀ {scale.label} ▶ {_number(scale.rng.vmax)} · {scale.colormap}")


def show_row(
    panels: Sequence[tuple[str, np.ndarray | None, str]],
    *,
    scales: Sequence[ColorScale | None] | ColorScale | None = None,
    captions: Sequence[str] | None = None,
) -> None:
    """Panels side by side: ``(title, image or None, text for a missing image)`` each.

    ``scales`` is one shared scale (shown once, under the row) or one per panel.
    """
    cols = st.columns(len(panels), gap="small")
    shared = isinstance(scales, ColorScale)
    for i, (col, (title, image, missing)) in enumerate(zip(cols, panels, strict=True)):
        with col:
            own = None if shared or scales is None else scales[i]  # type: ignore[index]
            show_panel(image, title=title, scale=own, missing=missing)
            if captions:
                st.caption(captions[i])
    if shared:
        show_color_scale(scales)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- downloads


def _scaled_name(name: str, scale: int) -> str:
    """``"levels.png"`` -> ``"levels@2x.png"`` (1x keeps the name)."""
    if scale == 1:
        return name
    base, dot, ext = name.rpartition(".")
    return f"{base}@{scale}x.{ext}" if dot else f"{name}@{scale}x"


def render_download_png(download: Download, scale: int) -> bytes:
    """The download's figure as PNG at ``scale`` x 100 dpi."""
    return figure_to_png(download.make(*download.args, **download.kwargs), scale=scale, dpi=EXPORT_DPI)


def download_button(download: Download, scale: int) -> None:
    """A PNG download whose figure is drawn only when the button is pressed."""
    st.download_button(
        f"Download PNG ({scale}×)",
        lambda: render_download_png(download, scale),
        file_name=_scaled_name(download.file_name, scale),
        mime="image/png",
        key=download.key or f"download_{download.file_name.rsplit('.', 1)[0]}",
        on_click="ignore",
        icon=":material/download:",
    )


def array_png(image: np.ndarray, scale: int = 1) -> bytes:
    """PNG bytes of an RGB uint8 image, enlarged ``scale`` times with nearest neighbour (crisp grids)."""
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if scale != 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def show_image(image: np.ndarray, *, caption: str, download_name: str, scale: int, key: str | None = None) -> None:
    """Show an RGB image (not a figure) with a PNG download at the export resolution."""
    st.image(screen_jpeg(image), caption=caption, width="stretch")
    st.download_button(
        f"Download PNG ({scale}×)",
        lambda: array_png(image, scale),
        file_name=_scaled_name(download_name, scale),
        mime="image/png",
        key=key or f"download_{download_name.rsplit('.', 1)[0]}",
        on_click="ignore",
        icon=":material/download:",
    )
