"""A corpus of odd and hostile image files, generated here (never downloaded).

Each entry names a file and whether a user should get a working view (``"ok"``) or one clear
error (``"error"``). The CLI and the upload widget are both run over it.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    expect: str  # "ok" or "error"


def _encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """A smooth, photo-like RGB image (gradients plus a disc), cheap to make at any size."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = (x / max(w - 1, 1) * 255).astype(np.uint8)
    g = (y / max(h - 1, 1) * 255).astype(np.uint8)
    disc = ((x - w / 2) ** 2 + (y - h / 2) ** 2) < (min(w, h) / 3) ** 2
    b = np.where(disc, 220, 40 + seed).astype(np.uint8)
    return Image.fromarray(np.dstack([r, g, b]))


def _png_claiming(width: int, height: int) -> bytes:
    """A valid small PNG whose header (IHDR) claims another size: a decompression bomb's header."""
    png = bytearray(_encode(_photo(8, 8), "PNG"))
    ihdr = png[12:29]  # b"IHDR" + 13 bytes of data
    data = struct.pack(">II", width, height) + bytes(ihdr[12:17])
    png[16:29] = data
    png[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + data) & 0xFFFFFFFF)
    return bytes(png)


def _exif_rotated_jpeg() -> bytes:
    img = _photo(64, 32)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    return _encode(img, "JPEG", exif=exif)


def build_corpus() -> list[Case]:
    """Every case of the hardening issue, as bytes."""
    jpeg = _encode(_photo(120, 90), "JPEG", quality=90)
    rgba = Image.fromarray(np.dstack([np.asarray(_photo(40, 30)), np.full((30, 40), 90, np.uint8)]), "RGBA")
    gray16 = Image.fromarray((np.linspace(0, 65535, 40 * 30).reshape(30, 40)).astype(np.uint16))
    pages = [_photo(40, 30, seed=s) for s in (0, 100)]
    tiff = io.BytesIO()
    pages[0].save(tiff, format="TIFF", save_all=True, append_images=pages[1:])
    gif = io.BytesIO()
    pages[0].save(gif, format="GIF", save_all=True, append_images=pages[1:], duration=100, loop=0)
    rng = np.random.default_rng(0)
    return [
        Case("empty.png", b"", "error"),
        Case("text.png", b"this is not an image, just some text\n" * 20, "error"),
        Case("random.jpg", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "error"),
        Case("truncated.jpg", jpeg[: len(jpeg) // 3], "error"),
        Case("bomb_30000x30000.png", _png_claiming(30000, 30000), "error"),
        Case("too_big.jpg", jpeg + b"\0" * (21 * 1024 * 1024), "error"),
        Case("tiny_1x1.png", _encode(_photo(1, 1), "PNG"), "ok"),
        Case("tiny_8x8.png", _encode(_photo(8, 8), "PNG"), "ok"),
        Case("aspect_4000x12.png", _encode(_photo(4000, 12), "PNG"), "ok"),
        Case("large_6000x4000.jpg", _encode(_photo(6000, 4000), "JPEG", quality=80), "ok"),
        Case("gray16.png", _encode(gray16, "PNG"), "ok"),
        Case("rgba.png", _encode(rgba, "PNG"), "ok"),
        Case("palette.png", _encode(_photo(40, 30).convert("P"), "PNG"), "ok"),
        Case("cmyk.jpg", _encode(_photo(40, 30).convert("CMYK"), "JPEG"), "ok"),
        Case("photo.webp", _encode(_photo(40, 30), "WEBP"), "ok"),
        Case("photo.bmp", _encode(_photo(40, 30), "BMP"), "ok"),
        Case("multipage.tiff", tiff.getvalue(), "ok"),
        Case("animated.gif", gif.getvalue(), "ok"),
        Case("exif_rotated.jpg", _exif_rotated_jpeg(), "ok"),
    ]


def write_corpus(folder: Path) -> list[tuple[Case, Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for case in build_corpus():
        path = folder / case.name
        path.write_bytes(case.data)
        out.append((case, path))
    return out
