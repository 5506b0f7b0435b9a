"""Image loading, resizing and normalisation for FPN Explorer.

Everything a user can upload goes through :func:`load_image`, which turns any image it
can read into an upright RGB ``uint8`` array and turns every failure into one typed
error, :class:`ImageError`, whose message says what to do next. The checks run in the
order that keeps a hostile file cheap: byte size first, then the pixel count read from
the header, and only then the pixels themselves (large JPEGs are decoded at a reduced
scale straight away).

The module also lists the bundled sample photographs.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:
    import torch

__all__ = [
    "MAX_DECODE_SIDE",
    "MAX_PIXELS",
    "MAX_UPLOAD_BYTES",
    "MIN_SIDE",
    "SAMPLES_DIR",
    "ImageError",
    "check_rgb",
    "list_samples",
    "load_image",
    "resize_long_side",
    "to_tensor",
]

MAX_PIXELS = 50_000_000
"""Largest width * height accepted, checked from the header before any pixel is decoded."""

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Largest encoded file accepted, in bytes."""

MAX_DECODE_SIDE = 2048
"""Images with a longer side are downscaled while decoding so no huge array is kept."""

MIN_SIDE = 32
"""The network's coarsest stride: a side shorter than this is upscaled."""

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"

_SUPPORTED = "Use a JPEG, PNG, WebP, BMP or TIFF."
_MB = 1024 * 1024
_SAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png")

# Errors Pillow's decoders are known to raise on damaged or hostile input. Each one is
# turned into an ImageError so the page can show a message instead of a traceback.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


class ImageError(ValueError):
    """An image that cannot be used; the message says what the user can do about it."""


# --------------------------------------------------------------------------- loading


def load_image(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int | None = MAX_UPLOAD_BYTES,
    max_side: int | None = MAX_DECODE_SIDE,
) -> np.ndarray:
    """Reads an image file into an upright RGB array.

    The steps, in order: the encoded size is checked against ``max_bytes``; the header
    is parsed and ``width * height`` is checked against ``max_pixels`` before any pixel
    is decoded; JPEGs larger than ``max_side`` are decoded at a reduced DCT scale
    (``Image.draft``); the first frame is used for multi-frame files (TIFF pages,
    animated GIF); the EXIF orientation is applied; the color mode is converted to RGB
    (transparency is composited on white, 16-bit data is scaled by its full range);
    finally the long side is reduced to ``max_side`` with a high-quality filter.

    Nothing is written to disk. Truncated files are refused (Pillow's
    ``LOAD_TRUNCATED_IMAGES`` is left as it is, ``False`` by default).

    Args:
        source: A path (``str`` or ``os.PathLike``), the encoded bytes, or a binary
            file-like object such as Streamlit's ``UploadedFile``. A seekable file
            is read from its start, so an upload that was read before still works.
        max_pixels: Largest accepted ``width * height`` of the stored image.
        max_bytes: Largest accepted encoded size in bytes; ``None`` for no limit.
        max_side: Longest side of the returned array; larger images are downscaled.
            ``None`` keeps the stored resolution.

    Returns:
        A C-contiguous, writable ``uint8`` array of shape ``(H, W, 3)`` in RGB order.

    Raises:
        ImageError: If the file is empty, too large, has too many pixels, or is not an
            image Pillow can decode. No other exception escapes for bad file content.
        TypeError: If ``source`` is not one of the accepted types (a programming error).
        ValueError: If a limit argument is not positive.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if max_bytes is not None and max_bytes < 1:
        raise ValueError(f"max_bytes must be positive or None, got {max_bytes}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be positive or None, got {max_side}")

    data = _read_source(source, max_bytes)
    try:
        # DecompressionBombWarning is raised, not printed: Pillow emits it from
        # Image.open for images above its own limit, and those must be refused too.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return _decode(img, max_pixels=max_pixels, max_side=max_side)
    except ImageError:
        raise
    except Image.UnidentifiedImageError as exc:
        raise ImageError(f"Could not read this file as an image (cannot identify image file). {_SUPPORTED}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(_bomb_message(exc, max_pixels)) from exc
    except MemoryError as exc:
        raise ImageError("This image is too large to decode in the memory available. Use a smaller image.") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(
            f"Could not read this file as an image ({_describe(exc)}). "
            f"The file may be damaged or truncated. {_SUPPORTED}"
        ) from exc


def _read_source(source: str | os.PathLike[str] | bytes | BinaryIO, max_bytes: int | None) -> bytes:
    """Returns the encoded bytes of ``source``, refusing empty and oversized input."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
            if path.is_dir():
                raise ImageError(f"{path} is a folder, not an image file.")
            if max_bytes is not None and size > max_bytes:
                raise ImageError(_too_big_message(size, max_bytes))
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ImageError(f"Image file not found: {path}") from exc
        except PermissionError as exc:
            raise ImageError(f"No permission to read the image file {path}") from exc
        except OSError as exc:
            raise ImageError(f"Could not read the image file {path} ({_describe(exc)}).") from exc
    elif hasattr(source, "read"):
        known_size: int | None = None
        if getattr(source, "seekable", lambda: False)():
            known_size = source.seek(0, io.SEEK_END)
            source.seek(0)
        if max_bytes is not None and known_size is not None and known_size > max_bytes:
            raise ImageError(_too_big_message(known_size, max_bytes))
        # Read one byte past the limit: enough to know it is too big, never the whole file.
        data = source.read() if max_bytes is None else source.read(max_bytes + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"source must be opened in binary mode, read() returned {type(data).__name__}")
        data = bytes(data)
        if max_bytes is not None and len(data) > max_bytes:
            raise ImageError(_too_big_message(None, max_bytes))
    else:
        raise TypeError(f"source must be a path, bytes or a binary file-like object, got {type(source).__name__}")
    if not data:
        raise ImageError(f"The file is empty (0 bytes). {_SUPPORTED}")
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageError(_too_big_message(len(data), max_bytes))
    return data


def _too_big_message(size: int | None, max_bytes: int) -> str:
    """``size`` is None for an unseekable stream, whose full length is never read."""
    actual = "is larger than that" if size is None else f"is {size / _MB:.1f} MB"
    return f"The upload limit is {max_bytes / _MB:g} MB and this file {actual}. Use a smaller or more compressed image."


def _bomb_message(exc: BaseException, max_pixels: int) -> str:
    """The message for an image Pillow refused as a possible decompression bomb.

    Pillow checks the header in ``Image.open``, before our own check could read the
    width and height, so the pixel count is taken from its message where it is there.
    """
    found = re.search(r"\((\d+) pixels\)", str(exc))
    limit_mp = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels) / 1e6
    if found is None:
        return f"This image has more pixels than the {limit_mp:g} megapixel limit. Use a smaller image."
    return (
        f"This image has {int(found.group(1)) / 1e6:.0f} megapixels, more than the "
        f"{limit_mp:g} megapixel limit. Use a smaller image."
    )


def _describe(exc: BaseException) -> str:
    """A short reason for ``exc`` without object reprs such as ``<_io.BytesIO at 0x...>``."""
    text = str(exc).split(" <", 1)[0].strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _decode(img: Image.Image, *, max_pixels: int, max_side: int | None) -> np.ndarray:
    """Decodes an opened (still lazy) image into an upright RGB uint8 array."""
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(f"The image has no pixels ({width} x {height}). {_SUPPORTED}")
    if width * height > max_pixels:
        raise ImageError(
            f"{width} x {height} pixels is more than the {max_pixels / 1e6:g} megapixel limit. Use a smaller image."
        )
    img.seek(0)  # multi-frame files (TIFF pages, animated GIF): the first frame
    if max_side is not None and max(width, height) > max_side:
        # JPEG only (a no-op for other formats): decode at 1/2, 1/4 or 1/8 scale. The
        # request keeps the aspect ratio because draft() picks the largest reduction
        # that leaves *both* sides at least the requested size.
        img.draft("RGB", _decode_size((width, height), max_side))
    img.load()
    rgb = _to_rgb(_upright(img))
    if max_side is not None and max(rgb.size) > max_side:
        rgb = rgb.resize(_decode_size(rgb.size, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if rgb is not img:
        img.close()  # frees the decoded pixels now, not when the caller's `with` ends
    return np.ascontiguousarray(np.array(rgb, dtype=np.uint8))


def _fit_long_side(wh: tuple[int, int], size: int) -> tuple[int, int]:
    """(w, h) scaled so the longer side equals ``size``, each side at least 1."""
    w, h = wh
    scale = size / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _decode_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """Like :func:`_fit_long_side`, but no side shrinks below ``MIN_SIDE`` (or its own size).

    A 4000 x 12 strip keeps its 12 rows instead of being squashed to 6.
    """
    fitted = _fit_long_side(size, max_side)
    return (
        max(fitted[0], min(size[0], MIN_SIDE)),
        max(fitted[1], min(size[1], MIN_SIDE)),
    )


def _upright(img: Image.Image) -> Image.Image:
    """Applies the EXIF orientation tag, if any."""
    try:
        upright = ImageOps.exif_transpose(img)
    except _DECODE_ERRORS:
        # A damaged EXIF block should not stop an otherwise readable image: it is shown
        # the way it is stored.
        return img
    return img if upright is None else upright


def _to_rgb(img: Image.Image) -> Image.Image:
    """Converts any Pillow mode to 8-bit RGB; transparency is composited on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_high_depth_to_uint8(np.asarray(img), mode)).convert("RGB")
    has_alpha = (
        mode in ("RGBA", "RGBa", "LA", "La", "PA")
        or "transparency" in img.info
        or (mode == "P" and img.palette is not None and img.palette.mode == "RGBA")
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as exc:  # e.g. LAB or HSV, which Pillow cannot convert directly
        raise ImageError(
            f"Images in the {mode} color mode are not supported. Save it as an RGB image first. {_SUPPORTED}"
        ) from exc


def _high_depth_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scales 16-bit, 32-bit integer or float pixels to uint8 by their type's range.

    16-bit data is divided by 257 (65535 -> 255), never clipped at 255. Mode ``I``
    (32-bit) holding values in 0..65535 is treated as 16-bit, which is how 16-bit
    files are often stored. Floats in 0..1 are scaled by 255. Anything else is
    stretched from its own minimum to its maximum.
    """
    data = values.astype(np.float64)
    finite = data[np.isfinite(data)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 0.0
    if mode.startswith("I;16") or (mode == "I" and lo >= 0 and hi <= 65535):
        scaled = data / 257.0
    elif mode == "F" and lo >= 0 and hi <= 1:
        scaled = data * 255.0
    elif hi > lo:
        scaled = (data - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(data)
    return np.clip(np.nan_to_num(np.rint(scaled)), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ resize / tensor


def resize_long_side(image: np.ndarray, size: int, *, min_side: int = MIN_SIDE) -> np.ndarray:
    """Resizes an RGB image so its longer side is ``size``, keeping the aspect ratio.

    Shrinking uses ``INTER_AREA`` (no aliasing), growing uses ``INTER_CUBIC``; when one
    side shrinks and the other grows each axis gets its own filter. Afterwards any side
    shorter than ``min_side`` is raised to ``min_side``, so extreme aspect ratios are
    stretched (4000 x 12 at ``size=512`` becomes 512 x 32) and the coarsest stride
    of the network still sees at least one cell.

    Args:
        image: ``uint8`` array of shape ``(H, W, 3)``.
        size: Target length of the longer side, in pixels.
        min_side: Smallest allowed length of either side, in pixels.

    Returns:
        A new C-contiguous ``uint8`` array of shape ``(h, w, 3)``.

    Raises:
        ValueError: If ``image`` is not ``(H, W, 3)`` uint8, or a size is not positive.
    """
    check_rgb(image)
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if min_side < 1:
        raise ValueError(f"min_side must be positive, got {min_side}")
    h, w = image.shape[:2]
    new_w, new_h = _fit_long_side((w, h), size)
    new_w, new_h = max(new_w, min_side), max(new_h, min_side)

    out = image
    shrink_w, shrink_h = min(w, new_w), min(h, new_h)
    if (shrink_w, shrink_h) != (w, h):
        out = cv2.resize(out, (shrink_w, shrink_h), interpolation=cv2.INTER_AREA)
    if (shrink_w, shrink_h) != (new_w, new_h):
        out = cv2.resize(out, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
    if out is image:
        out = image.copy()
    return np.ascontiguousarray(out, dtype=np.uint8)


def to_tensor(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Turns an RGB uint8 image into a normalised network input batch.

    Args:
        image: ``uint8`` array of shape ``(H, W, 3)`` in RGB order.
        mean: Per-channel mean of the [0, 1] scaled input: the weights record's (``backbone.mean``).
        std: Per-channel standard deviation: the weights record's (``backbone.std``).

    Returns:
        A ``float32`` tensor of shape ``(1, 3, H, W)``: ``(image / 255 - mean) / std``.

    Raises:
        ValueError: If ``image`` is not ``(H, W, 3)`` uint8, ``mean``/``std`` do not have
            three entries, or a ``std`` entry is not positive.
    """
    import torch  # here, not at the top: loading images should not need torch

    check_rgb(image)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values each, got {tuple(mean)} and {tuple(std)}")
    if any(not s > 0 for s in std):
        raise ValueError(f"std values must be positive, got {tuple(std)}")
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return ((pixels - mean_t) / std_t).unsqueeze(0).contiguous()


def check_rgb(image: np.ndarray) -> None:
    """Refuses anything but a non-empty ``uint8`` RGB array of shape ``(H, W, 3)``.

    Raises:
        ValueError: naming the array's type, dtype or shape.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be a uint8 array of shape (H, W, 3), got {image.dtype} {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must have at least one pixel, got shape {image.shape}")


# -------------------------------------------------------------------------- samples


def list_samples() -> dict[str, Path]:
    """Lists the sample images a user can pick without uploading.

    Returns:
        Display name (the file name) -> path: the bundled images in ``samples/`` sorted
        by name, then ``grace_hopper.jpg`` from matplotlib's sample data when it is
        installed. A bundled file wins over matplotlib's if both have the same name.
    """
    samples: dict[str, Path] = {}
    if SAMPLES_DIR.is_dir():
        for path in sorted(SAMPLES_DIR.iterdir(), key=lambda p: p.name.lower()):
            if path.is_file() and path.suffix.lower() in _SAMPLE_SUFFIXES:
                samples[path.name] = path
    hopper = _matplotlib_sample("grace_hopper.jpg")
    if hopper is not None:
        samples.setdefault("grace_hopper.jpg", hopper)
    return samples


def _matplotlib_sample(name: str) -> Path | None:
    """Path of one of matplotlib's sample files, or None where it is not installed."""
    try:
        from matplotlib import cbook

        found = cbook.get_sample_data(name, asfileobj=False)
    except (OSError, ValueError, ImportError):
        return None
    # Depending on the matplotlib version this is a str, a Path or an open file.
    if hasattr(found, "read"):
        file_name = getattr(found, "name", None)
        close = getattr(found, "close", None)
        if callable(close):
            close()
        if not isinstance(file_name, (str, os.PathLike)):
            return None
        found = file_name
    path = Path(found)
    return path if path.is_file() else None
