"""Image loading: every input a user can upload either loads upright in RGB or fails with ImageError.

Each test builds its own input with PIL or numpy; nothing is downloaded.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from fpn_core.images import (
    MAX_DECODE_SIDE,
    MAX_UPLOAD_BYTES,
    MIN_SIDE,
    ImageError,
    check_rgb,
    list_samples,
    load_image,
    resize_long_side,
    to_tensor,
)
from fpn_core.weights import IMAGENET_MEAN, IMAGENET_STD

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
RED = (220, 30, 40)
BLUE = (20, 40, 210)


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def solid(color: tuple[int, int, int], size: tuple[int, int] = (48, 32)) -> Image.Image:
    return Image.new("RGB", size, color)


def assert_color(pixel: np.ndarray, expected: tuple[int, ...], tol: int = 12) -> None:
    diff = np.abs(pixel.astype(int) - np.array(expected))
    assert diff.max() <= tol, f"got {tuple(pixel)}, expected about {expected}"


def with_png_size(png: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height``, with a valid IHDR CRC."""
    assert png[12:16] == b"IHDR"
    ihdr = png[12:16] + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


# ------------------------------------------------------------------ sources


class FakeUpload(io.BytesIO):
    """Like Streamlit's UploadedFile: a BytesIO subclass, possibly already read."""


def test_path_bytes_and_file_like_give_the_same_pixels(tmp_path: Path) -> None:
    data = encode(solid(RED), "PNG")
    path = tmp_path / "red.png"
    path.write_bytes(data)
    upload = FakeUpload(data)
    upload.read()  # a previous rerun consumed it; load_image must start from the beginning

    from_path = load_image(path)
    from_str = load_image(str(path))
    from_bytes = load_image(data)
    from_upload = load_image(upload)

    assert from_path.shape == (32, 48, 3)
    assert from_path.dtype == np.uint8
    assert from_path.flags.c_contiguous
    for other in (from_str, from_bytes, from_upload):
        np.testing.assert_array_equal(other, from_path)
    assert_color(from_path[0, 0], RED, tol=0)


def test_missing_file_and_folder_are_image_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_unsupported_source_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="int"):
        load_image(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------ limits


def test_empty_file_is_refused() -> None:
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(io.BytesIO())


def test_file_over_the_byte_limit_names_the_limit_in_mb(tmp_path: Path) -> None:
    blob = b"\xff" * (3 * MB)
    path = tmp_path / "big.jpg"
    path.write_bytes(blob)
    for source in (blob, io.BytesIO(blob), path):
        with pytest.raises(ImageError, match=r"2 MB"):
            load_image(source, max_bytes=2 * MB)
    with pytest.raises(ImageError, match=r"20 MB"):
        load_image(b"\x00" * (MAX_UPLOAD_BYTES + 1))


def test_unseekable_stream_over_the_limit_is_refused_without_reading_it_all() -> None:
    class Stream(io.RawIOBase):
        def __init__(self) -> None:
            self.served = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            n = 10 * MB if n < 0 else n
            self.served += n
            return b"\x00" * n

    stream = Stream()
    with pytest.raises(ImageError, match="1 MB"):
        load_image(stream, max_bytes=1 * MB)
    assert stream.served <= MB + 1


def test_no_byte_limit_when_max_bytes_is_none() -> None:
    data = encode(solid(BLUE), "BMP")
    assert load_image(io.BytesIO(data), max_bytes=None).shape == (32, 48, 3)


def test_pixel_bomb_is_refused_from_the_header_before_decoding() -> None:
    # A valid 8x8 PNG whose header claims 30000 x 30000: 2.7 GB if decoded. The peak of
    # traced allocations shows no pixel array was made (no wall-clock bound: CI is noisy).
    bomb = with_png_size(encode(solid(RED, (8, 8)), "PNG"), 30_000, 30_000)
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="megapixel limit"):
            load_image(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * MB


def test_image_over_our_limit_but_under_pillows_names_its_size() -> None:
    big = with_png_size(encode(solid(RED, (8, 8)), "PNG"), 8000, 7000)  # 56 MP
    with pytest.raises(ImageError, match=r"8000 x 7000 pixels is more than the 50 megapixel limit"):
        load_image(big)
    with pytest.raises(ImageError, match=r"more than the 0.001 megapixel limit"):
        load_image(encode(solid(RED, (40, 40)), "PNG"), max_pixels=1000)


def test_pillows_bomb_warning_becomes_an_image_error() -> None:
    # Pillow warns (rather than refuses) between its limit and twice its limit.
    claimed = Image.MAX_IMAGE_PIXELS + 1_000_000
    side = int(claimed**0.5) + 1
    png = with_png_size(encode(solid(RED, (8, 8)), "PNG"), side, side)
    with pytest.raises(ImageError, match="megapixel"):
        load_image(png, max_pixels=4 * side * side)


# ------------------------------------------------------------------ orientation, frames, modes


def test_exif_orientation_is_applied() -> None:
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(Image.new("RGB", (20, 20), RED), (0, 0))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    image = load_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert image.shape == (40, 20, 3)  # upright: 20 wide, 40 tall
    assert_color(image[5, 10], RED, tol=30)  # stored left is now on top
    assert_color(image[35, 10], BLUE, tol=30)


def test_multi_page_tiff_uses_the_first_page() -> None:
    first, second = solid(RED), solid(BLUE, (16, 16))
    data = encode(first, "TIFF", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).n_frames == 2
    image = load_image(data)
    assert image.shape == (32, 48, 3)
    assert_color(image[10, 10], RED, tol=0)


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [solid(RED), solid(BLUE), solid((0, 200, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    image = load_image(data)
    assert_color(image[10, 10], RED, tol=8)


def test_16_bit_grey_is_scaled_by_its_range_not_clipped() -> None:
    values = np.array([[0, 32768, 65535, 255]], dtype=np.uint16)
    png = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(png)).mode.startswith("I")
    image = load_image(png)
    assert image.shape == (1, 4, 3)
    np.testing.assert_array_equal(image[0, :, 0], [0, 128, 255, 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])  # grey stays grey


def test_16_bit_big_endian_tiff() -> None:
    img = Image.fromarray(np.array([[65535, 32768]], dtype=">u2"))
    assert img.mode == "I;16B"
    image = load_image(encode(img, "TIFF"))
    np.testing.assert_array_equal(image[0, :, 1], [255, 128])


def test_32_bit_int_and_float_images() -> None:
    as_int = Image.fromarray(np.array([[0, 65535]], dtype=np.int32))
    assert as_int.mode == "I"
    np.testing.assert_array_equal(load_image(encode(as_int, "TIFF"))[0, :, 0], [0, 255])
    as_float = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert as_float.mode == "F"
    np.testing.assert_array_equal(load_image(encode(as_float, "TIFF"))[0, :, 0], [0, 128, 255])


def test_transparent_pixels_are_composited_on_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((0, 0), (255, 0, 0, 255))  # one opaque red pixel
    image = load_image(encode(rgba, "PNG"))
    assert_color(image[1, 1], (255, 255, 255), tol=0)
    assert_color(image[0, 0], (255, 0, 0), tol=0)

    half = load_image(encode(Image.new("LA", (2, 2), (0, 128)), "PNG"))  # black at 50 %
    assert_color(half[0, 0], (127, 127, 127), tol=2)


def test_palette_with_transparency_is_composited_on_white() -> None:
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((0, 0), 1)
    pal.info["transparency"] = 0  # index 0 (red) is transparent
    image = load_image(encode(pal, "PNG", transparency=0))
    assert_color(image[2, 2], (255, 255, 255), tol=0)
    assert_color(image[0, 0], (0, 0, 255), tol=0)


def test_cmyk_jpeg_comes_back_as_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red ink
    data = encode(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    image = load_image(data)
    assert image.shape == (16, 16, 3)
    assert_color(image[8, 8], (255, 0, 0), tol=10)


@pytest.mark.parametrize(
    ("mode", "fmt", "expected"),
    [
        ("1", "PNG", (255, 255, 255)),
        ("1", "BMP", (255, 255, 255)),
        ("L", "PNG", (200, 200, 200)),
        ("P", "GIF", RED),
        ("YCbCr", "JPEG", RED),
        ("RGB", "WEBP", RED),
        ("LA", "WEBP", (200, 200, 200)),
    ],
)
def test_color_modes_become_rgb(mode: str, fmt: str, expected: tuple[int, int, int]) -> None:
    base = solid(RED) if expected == RED else Image.new("L", (48, 32), expected[0])
    if mode == "1":
        img = Image.new("1", (48, 32), 1)
    elif mode == "P":
        img = base.convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        img = base.convert(mode)
    assert img.mode == mode
    params = {"lossless": True} if fmt == "WEBP" else {}
    image = load_image(encode(img, fmt, **params))
    assert image.shape == (32, 48, 3)
    assert image.dtype == np.uint8
    assert_color(image[16, 24], expected, tol=12)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_supported_formats_load(fmt: str) -> None:
    img = Image.new("RGB", (64, 40), BLUE)
    img.paste(Image.new("RGB", (32, 40), RED), (0, 0))
    image = load_image(encode(img, fmt))
    assert image.shape == (40, 64, 3)
    assert_color(image[20, 8], RED, tol=16)
    assert_color(image[20, 56], BLUE, tol=16)


# ------------------------------------------------------------------ unreadable input


def test_text_file_named_png_is_an_image_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageError, match=r"cannot identify image file\). Use a JPEG, PNG, WebP, BMP or TIFF"):
        load_image(path)


def test_random_bytes_are_an_image_error() -> None:
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(ImageError, match="Could not read this file as an image"):
        load_image(noise)


def test_truncated_jpeg_is_refused() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(pixels), "JPEG", quality=90)
    with pytest.raises(ImageError, match="truncated"):
        load_image(data[: len(data) // 3])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_damaged_files_only_ever_raise_image_error() -> None:
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)  # damaged TIFF tags make Pillow warn
    originals = [encode(Image.fromarray(pixels), fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")]
    loaded = refused = 0
    for data in originals:
        for _ in range(15):
            damaged = bytearray(data)
            for pos in rng.integers(0, len(damaged), 4):
                damaged[pos] = int(rng.integers(0, 256))
            try:
                image = load_image(bytes(damaged))
            except ImageError:
                refused += 1
            else:
                assert image.ndim == 3
                assert image.shape[2] == 3
                loaded += 1
    assert refused > 0


# ------------------------------------------------------------------ sizes


@pytest.mark.parametrize("side", [1, 8])
def test_tiny_images_load_and_resize_to_the_network_minimum(side: int) -> None:
    image = load_image(encode(solid(RED, (side, side)), "PNG"))
    assert image.shape == (side, side, 3)
    resized = resize_long_side(image, 512)
    assert min(resized.shape[:2]) >= MIN_SIDE
    assert_color(resized[5, 5], RED, tol=0)


def test_extreme_aspect_ratio_raises_the_short_side() -> None:
    image = load_image(encode(solid(RED, (4000, 12)), "PNG"))
    assert image.shape == (12, MAX_DECODE_SIDE, 3)  # long side capped, short side kept
    resized = resize_long_side(image, 512)
    assert resized.shape == (32, 512, 3)
    assert resized.dtype == np.uint8


def _big_jpeg(path: Path) -> None:
    smooth = np.random.default_rng(3).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(smooth).resize((6000, 4000), Image.Resampling.BILINEAR).save(path, quality=85)


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "6000x4000.jpg"
    _big_jpeg(path)
    return path


def test_huge_jpeg_is_decoded_small(big_jpeg: Path) -> None:
    full_rgb_bytes = 6000 * 4000 * 3  # 72 MB
    tracemalloc.start()
    try:
        image = load_image(big_jpeg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert image.shape == (1365, 2048, 3)
    assert peak < full_rgb_bytes / 3


def test_huge_jpeg_uses_reduced_dct_decoding(big_jpeg: Path) -> None:
    # Pillow's pixel memory is invisible to tracemalloc, so measure the process: decoding
    # 6000 x 4000 at full size takes 96 MB in Pillow alone (4 bytes per pixel), while the
    # JPEG draft mode decodes 3000 x 2000 and stays far below that.
    script = textwrap.dedent(
        f"""
        import importlib.util, resource, sys
        # Load the module file alone: the package __init__ would import the whole model.
        spec = importlib.util.spec_from_file_location("images", {str(ROOT / "fpn_core" / "images.py")!r})
        images = sys.modules["images"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(images)
        load_image = images.load_image
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        image = load_image({str(big_jpeg)!r})
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(image.shape[1], grown_mb)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    width, grown_mb = result.stdout.split()
    assert int(width) == 2048
    assert float(grown_mb) < 110, f"peak memory grew by {grown_mb} MB while loading"


def test_max_side_none_keeps_the_stored_size() -> None:
    image = load_image(encode(solid(RED, (300, 100)), "PNG"), max_side=None)
    assert image.shape == (100, 300, 3)
    assert load_image(encode(solid(RED, (300, 100)), "PNG"), max_side=150).shape == (50, 150, 3)


# ------------------------------------------------------------------ resize / tensor


def test_resize_long_side_keeps_aspect_and_uses_area_when_shrinking() -> None:
    checker = (np.indices((400, 600)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = np.repeat(checker[..., None], 3, axis=2)
    small = resize_long_side(image, 150)
    assert small.shape == (100, 150, 3)
    # Area averaging turns a 1-px checkerboard into even grey; point sampling would not.
    assert abs(float(small.mean()) - 127.5) < 3
    assert float(small.std()) < 10


def test_resize_long_side_grows_small_images_smoothly() -> None:
    image = np.zeros((10, 20, 3), dtype=np.uint8)
    image[:, 10:] = 255
    big = resize_long_side(image, 200)
    assert big.shape == (100, 200, 3)
    row = big[50, :, 0].astype(int)
    assert np.all(np.diff(row) >= -3)  # a ramp, no wild ringing
    assert len(np.unique(row)) > 5  # interpolated, not blocky


def test_resize_long_side_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="size must be positive"):
        resize_long_side(np.zeros((8, 8, 3), np.uint8), 0)
    with pytest.raises(ValueError, match="float32"):
        resize_long_side(np.zeros((8, 8, 3), np.float32), 64)


@pytest.mark.parametrize(
    ("image", "match"),
    [
        ([[[0, 0, 0]]], "numpy array, got list"),
        (np.zeros((4, 4, 3), np.float64), r"uint8 array of shape \(H, W, 3\), got float64"),
        (np.zeros((4, 4, 4), np.uint8), r"\(4, 4, 4\)"),
        (np.zeros((4, 4), np.uint8), r"\(4, 4\)"),
        (np.zeros((0, 4, 3), np.uint8), "at least one pixel"),
    ],
)
def test_check_rgb_names_what_is_wrong(image: object, match: str) -> None:
    check_rgb(np.zeros((1, 1, 3), np.uint8))  # the smallest image passes
    with pytest.raises(ValueError, match=match):
        check_rgb(image)  # type: ignore[arg-type]


def test_to_tensor_normalises_with_mean_and_std() -> None:
    image = np.zeros((6, 5, 3), dtype=np.uint8)
    image[0, 0] = (255, 255, 255)
    tensor = to_tensor(image, IMAGENET_MEAN, IMAGENET_STD)
    assert tensor.shape == (1, 3, 6, 5)
    assert tensor.dtype == torch.float32
    expected_white = [(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    expected_black = [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    torch.testing.assert_close(tensor[0, :, 0, 0], torch.tensor(expected_white))
    torch.testing.assert_close(tensor[0, :, 3, 3], torch.tensor(expected_black))
    with pytest.raises(ValueError, match="std"):
        to_tensor(image, IMAGENET_MEAN, (0.2, 0.0, 0.2))


# -------------------------------------------------------------------------- samples


def test_samples_are_listed_and_load() -> None:
    samples = list_samples()
    bundled = ["astronaut.jpg", "chelsea.jpg", "coffee.jpg"]
    assert list(samples)[:3] == bundled
    assert "grace_hopper.jpg" in samples
    for name, path in samples.items():
        assert path.is_file(), name
        image = load_image(path)
        assert image.ndim == 3
        assert min(image.shape[:2]) > 200
