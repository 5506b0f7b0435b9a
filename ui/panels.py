"""Screen panels: numpy images with light titles and color bars; figures only for downloads.

On screen a map is an RGB array from ``fpn_core.maps`` (OpenCV/color-map code, a few ms),
shown with ``st.image``; its title is markdown, its color scale a strip drawn into the bottom of
the same image with the values in the image's caption, so a screenshot of a panel still says what
it shows (one image and no extra elements per panel: each element is work for the browser at
every rerun). The annotated
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
from typing import TypeVar

import cv2
import numpy as np
import streamlit as st
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from fpn_core.figures import figure_to_png, maps_row_figure
from fpn_core.maps import MapRange, colorize, normalize

T = TypeVar("T")

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


class _PerArray:
    """Values derived from read-only arrays, looked up by the array's identity and dropped with it.

    The caches hand back the same read-only arrays on every rerun, so what is derived from one
    (its JPEG bytes, its image with a strip) is made once and, being the same object, keeps the
    same URL: the browser neither fetches nor decodes it again. A writable array may still
    change, so its value is made each time and not kept.
    """

    def __init__(self) -> None:
        self.entries: dict[object, tuple[weakref.ref, object]] = {}
        # Re-entrant: freeing one entry's value can free an array another entry hangs on, whose
        # weakref callback then runs on the thread that holds the lock.
        self._lock = threading.RLock()

    def get(self, image: np.ndarray, key: object, make: Callable[[], T]) -> T:
        with self._lock:
            hit = self.entries.get(key)
        if hit is not None and hit[0]() is image:
            return hit[1]  # type: ignore[return-value]
        value = make()
        if not image.flags.writeable:
            ref = weakref.ref(image, lambda _, k=key: self._drop(k))
            with self._lock:
                self.entries[key] = (ref, value)
        return value

    def _drop(self, key: object) -> None:
        with self._lock:
            self.entries.pop(key, None)


_jpegs, _strips = _PerArray(), _PerArray()


def screen_jpeg(image: np.ndarray) -> bytes:
    """JPEG bytes of an RGB uint8 screen image, encoded once per read-only array (:class:`_PerArray`)."""

    def encode() -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(
            buffer, format="JPEG", quality=SCREEN_JPEG_QUALITY
        )
        return buffer.getvalue()

    return _jpegs.get(image, id(image), encode)


def with_strip(image: np.ndarray, colormap: str) -> np.ndarray:
    """``image`` with its color strip below it (a white gap, then low to high values left to right).

    The strip keeps the shape it had as an image of its own stretched to the column (256 x 10).
    Made once per read-only image (:class:`_PerArray`), so a rerun sends the same bytes.
    """

    def compose() -> np.ndarray:
        w = image.shape[1]
        strip = cv2.resize(colorbar_strip(colormap), (w, max(4, round(w * 10 / 256))), interpolation=cv2.INTER_LINEAR)
        gap = np.full((max(4, round(w / 40)), w, 3), 255, dtype=np.uint8)
        out = np.concatenate([np.asarray(image, dtype=np.uint8), gap, strip])
        out.setflags(write=False)
        return out

    return _strips.get(image, (id(image), colormap), compose)


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
        scale: the color scale: a strip drawn under the image, its end values in the caption.
        download: the annotated figure offered as a PNG (drawn only when pressed).
        export_scale: resolution of the download (1x = 100 dpi).
        missing: text in place of a missing image.
    """
    st.markdown(f"**{title}**")
    if image is None:
        st.info(missing or "Not computed.", icon=":material/block:")
        if scale is not None:
            show_color_scale(scale)
    else:
        if scale is not None:
            image = with_strip(image, scale.colormap)
            caption = " · ".join(part for part in (scale_text(scale), caption) if part)
        st.image(screen_jpeg(image), width="stretch", caption=caption)
    if download is not None:
        download_button(download, export_scale)


def scale_text(scale: ColorScale) -> str:
    """``"0.0115 ◀ channel mean ▶ 0.308 · viridis"``: a strip's end values and what they measure."""
    return f"{_number(scale.rng.vmin)} ◀ {scale.label} ▶ {_number(scale.rng.vmax)} · {scale.colormap}"


def show_color_scale(scale: ColorScale) -> None:
    """A color strip of its own (one shared by a row of panels) with its end values."""
    st.image(screen_jpeg(colorbar_strip(scale.colormap)), width="stretch")
    st.caption(scale_text(scale))


def show_row(
    panels: Sequence[tuple[str, np.ndarray | None, str]],
    *,
    scales: Sequence[ColorScale | None] = (),
    captions: Sequence[str] | None = None,
) -> None:
    """Panels side by side: ``(title, image or None, text for a missing image)`` each.

    ``scales`` has one scale per panel (None for a missing map, or none at all); when every
    panel has the same scale it is shown once, under the row.
    """
    cols = st.columns(len(panels), gap="small")
    present = [s for s in scales if s is not None]
    shared = len(panels) > 1 and len(present) > 0 and len(set(present)) == 1
    for i, (col, (title, image, missing)) in enumerate(zip(cols, panels, strict=True)):
        with col:
            own = None if shared or not scales else scales[i]
            show_panel(image, title=title, scale=own, missing=missing)
            if captions:
                st.caption(captions[i])
    if shared:
        show_color_scale(present[0])


def show_maps_row(
    row: Sequence[tuple[str, np.ndarray | None, str]],
    scales: Sequence[ColorScale | None],
    *,
    suptitle: str,
    file_name: str,
    export_scale: int,
    key: str | None = None,
    captions: Sequence[str] | None = None,
) -> None:
    """A row of 2-D maps, each colored by its scale, and the row's PNG download (``maps_row_figure``).

    Args:
        row: ``(title, 2-D map or None, text for a missing map)`` per panel.
        scales: one per panel (None for a missing map); equal scales share one color bar.
        suptitle: the downloaded figure's title.
        file_name: the download's file name.
        export_scale: the download's resolution (1x = 100 dpi).
        key: the download button's key.
        captions: a line under each panel.
    """
    images = [
        (title, map_image(m, scale) if m is not None and scale is not None else None, missing)
        for (title, m, missing), scale in zip(row, scales, strict=True)
    ]
    show_row(images, scales=scales, captions=captions)
    first = next(s for s in scales if s is not None)
    figure_args = {
        "rngs": [s.rng if s is not None else None for s in scales],
        "colormap": first.colormap,
        "suptitle": suptitle,
        "colorbar_label": first.label,
        "missing": [missing for _, _, missing in row],
    }
    download = Download(maps_row_figure, ([(title, m) for title, m, _ in row],), figure_args, file_name, key)
    download_button(download, export_scale)


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


# ------------------------------------------------------------------------------- boxes


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):  # a Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def line_width(image: np.ndarray) -> int:
    """The boxes' default line width for ``image``: 2 px, more on large images."""
    return max(2, round(max(image.shape[:2]) / 300))


def draw_boxes(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]],
    colors: Sequence[tuple[int, int, int]],
    labels: Sequence[str] | None = None,
    *,
    width: int | None = None,
) -> np.ndarray:
    """A copy of ``image`` with each box outlined, and its label on a tab of the box's color.

    Args:
        image: RGB uint8 ``(H, W, 3)``.
        boxes: x1, y1, x2, y2 in the image's pixels (inclusive corners), best first (drawn last, on top).
        colors: one RGB color per box.
        labels: text per box (e.g. ``"cat 0.93"``), or None for bare boxes.
        width: line width in pixels (default: :func:`line_width`).

    Returns:
        RGB uint8 of the image's shape.
    """
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(pil)
    h, w = image.shape[:2]
    line = width or line_width(image)
    font = _font(max(12, round(max(h, w) / 40)))
    for i in range(len(boxes) - 1, -1, -1):
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        x1, y1 = min(max(x1, 0.0), w - 1.0), min(max(y1, 0.0), h - 1.0)
        x2, y2 = min(max(x2, x1), w - 1.0), min(max(y2, y1), h - 1.0)
        color = tuple(colors[i])
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line)
        if labels is None:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), labels[i], font=font)
        tw, th = right - left + 6, bottom - top + 4
        ty = y1 - th if y1 - th >= 0 else y1  # no room above the box: the tab goes inside its top edge
        tx = min(x1, max(0.0, w - tw))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=color)
        draw.text((tx + 3 - left, ty + 2 - top), labels[i], fill=(255, 255, 255), font=font)
    return np.asarray(pil)


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
