"""Screen images: JPEG bytes encoded once per read-only array, so an unchanged image costs nothing on a rerun."""

from __future__ import annotations

import gc
import io

import numpy as np
from PIL import Image

from ui import panels


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)


def test_screen_jpeg_is_a_jpeg_of_the_image() -> None:
    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    image = np.stack([np.tile(ramp, (48, 1))] * 3, axis=-1).astype(np.uint8)  # smooth: JPEG keeps it closely
    data = panels.screen_jpeg(image)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "JPEG" and decoded.size == (64, 48)
    assert np.abs(np.asarray(decoded, dtype=np.int16) - image).mean() < 3  # the same picture


def test_read_only_arrays_are_encoded_once_and_forgotten_with_the_array() -> None:
    image = _image(1)
    image.setflags(write=False)
    first = panels.screen_jpeg(image)
    assert panels.screen_jpeg(image) is first, "a rerun with the same cached array reuses the bytes"
    assert id(image) in panels._jpegs.entries
    key = id(image)
    del image
    gc.collect()
    assert key not in panels._jpegs.entries


def test_writable_arrays_are_encoded_each_time() -> None:
    image = _image(2)
    first = panels.screen_jpeg(image)
    image[:] = 0  # a writable array may change between runs
    second = panels.screen_jpeg(image)
    assert second != first
    assert id(image) not in panels._jpegs.entries


def test_with_strip_draws_the_scale_under_the_image_once_per_image() -> None:
    from ui import panels

    image = np.zeros((40, 512, 3), dtype=np.uint8)
    image.setflags(write=False)
    out = panels.with_strip(image, "viridis")
    assert out.shape[1] == 512 and out.shape[0] == 40 + round(512 / 40) + 20
    assert (out[:40] == 0).all() and (out[40 : 40 + round(512 / 40)] == 255).all()
    strip = out[-20:].astype(int)
    assert strip[:, 0].sum() < strip[:, -1].sum()  # dark (low) on the left, bright (high) on the right
    assert panels.with_strip(image, "viridis") is out  # the same bytes for the browser on a rerun
    assert panels.with_strip(image, "magma") is not out


def test_freeing_an_image_frees_its_strip_and_bytes_without_deadlock() -> None:
    """The strip's entry goes with its image, and the composed image's JPEG with it (two weakref
    callbacks, one inside the other: they once waited on the same lock forever)."""
    import threading

    from ui import panels

    def cycle() -> None:
        for _ in range(20):
            image = np.full((24, 64, 3), 7, dtype=np.uint8)
            image.setflags(write=False)
            panels.screen_jpeg(panels.with_strip(image, "viridis"))
            del image
            gc.collect()

    worker = threading.Thread(target=cycle, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "freeing an image deadlocked"
    gc.collect()
    assert not any(ref() is not None and ref().shape == (24, 64, 3) for ref, _ in panels._strips.entries.values())
