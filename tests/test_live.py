"""The live camera's engine: the per-frame function, the dominant-level map, the one-slot gate,
the statistics, start/stop without leftovers, fair device slots and the ICE servers setting."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest
import torch

from fpn_core import device
from fpn_core.levels import LEVEL_COLORS
from fpn_core.live import (
    NO_LEVEL,
    LatestSlot,
    LiveRunner,
    LiveStats,
    LiveView,
    colormap_lut,
    dominant_levels,
    draw_legend,
    ice_servers_from_env,
    level_shares,
    process_frame,
    render_dominant,
    render_overlay,
)
from fpn_core.maps import colorize

SIZE = 160


def _frame(h: int = 120, w: int = 160, side: int = 40) -> np.ndarray:
    """A grey frame with a yellow square in the middle (RGB uint8)."""
    frame = np.full((h, w, 3), 90, np.uint8)
    y, x = h // 2 - side // 2, w // 2 - side // 2
    frame[y : y + side, x : x + side] = (230, 220, 60)
    return frame


@pytest.fixture(scope="module")
def pyramid(random_pyramid):
    return random_pyramid(out_channels=64)


# ------------------------------------------------------------------------ one frame


@pytest.mark.parametrize("view", ["dominant", "overlay"])
@pytest.mark.parametrize("hw", [(120, 160), (151, 97)])
def test_process_frame_returns_an_image_of_the_frames_size(pyramid, view: str, hw: tuple[int, int]) -> None:
    frame = _frame(*hw, side=30)
    before = frame.copy()
    out = process_frame(pyramid, frame, LiveView(view=view, size=SIZE))
    assert out.image.shape == frame.shape and out.image.dtype == np.uint8
    assert np.array_equal(frame, before), "the camera frame is not written to"
    assert not np.array_equal(out.image, frame), "something was drawn"
    assert set(out.shares) <= set(pyramid.config.level_names)
    if out.shares:
        assert sum(out.shares.values()) == pytest.approx(1.0)


def test_dominant_view_colors_pixels_in_the_level_colors(pyramid) -> None:
    out = process_frame(pyramid, _frame(side=50), LiveView(view="dominant", size=SIZE, alpha=1.0))
    assert out.shares, "something stands out on a square"
    pixels = {tuple(p) for p in out.image[40:, :].reshape(-1, 3)}  # below the legend
    shown = {name for name, color in LEVEL_COLORS.items() if color in pixels}
    assert shown and shown <= set(pyramid.config.level_names)
    assert {n for n, s in out.shares.items() if s > 0} == shown


def test_boxes_view_needs_a_detector(pyramid) -> None:
    with pytest.raises(ValueError, match="detector"):
        process_frame(pyramid, _frame(), LiveView(view="boxes", size=SIZE))


def test_boxes_view_draws_a_detectors_boxes_in_level_colors() -> None:
    from fpn_core.detection import build_detector

    det = build_detector("retinanet", weights="random", allow_download=False)
    frame = _frame(side=60)
    out = process_frame(det, frame, LiveView(view="boxes", size=SIZE))
    assert out.image.shape == frame.shape
    assert out.shares and set(out.shares) <= {"p3", "p4", "p5", "p6", "p7"}
    assert sum(out.shares.values()) == pytest.approx(1.0)
    pixels = {tuple(p) for p in out.image[30:, :].reshape(-1, 3)}
    assert any(LEVEL_COLORS[n] in pixels for n in out.shares)


def test_live_view_refuses_bad_values_by_name() -> None:
    for kwargs, word in [
        ({"view": "bad"}, "view"),
        ({"size": 100}, "live size"),
        ({"size": 400}, "live size"),
        ({"alpha": 1.5}, "alpha"),
        ({"aggregation": "median"}, "aggregation"),
    ]:
        with pytest.raises(ValueError, match=word):
            LiveView(**kwargs)


# ------------------------------------------------------------------- maps and drawing


def test_dominant_levels_on_synthetic_features() -> None:
    """A sharp small peak wins on the fine level, a broad blob on the coarse one; flat ground on none."""
    p3 = np.zeros((32, 32), np.float32)
    p3[4:6, 4:6] = 10.0  # a small object, seen sharply at stride 8
    p5 = np.zeros((8, 8), np.float32)
    p5[4:8, 4:8] = 3.0  # a large object, a quarter of the frame
    p4 = np.full((16, 16), 50.0, np.float32)  # strong everywhere: normalized away, never dominant
    labels, names = dominant_levels({"p3": p3, "p4": p4, "p5": p5})
    assert names == ("p3", "p4", "p5")
    assert labels.shape == (32, 32) and labels.dtype == np.uint8
    assert labels[4, 4] == 0
    assert labels[24, 24] == 2
    assert labels[0, 31] == NO_LEVEL and labels[31, 0] == NO_LEVEL
    assert 1 not in labels
    shares = level_shares(labels, names)
    assert set(shares) == {"p3", "p4", "p5"} and sum(shares.values()) == pytest.approx(1.0)
    assert shares["p4"] == 0.0 and shares["p5"] > shares["p3"] > 0


def test_dominant_levels_with_nothing_standing_out() -> None:
    labels, names = dominant_levels({"p3": np.ones((8, 8)), "p4": np.ones((4, 4))})
    assert (labels == NO_LEVEL).all()
    assert level_shares(labels, names) == {}
    with pytest.raises(ValueError):
        dominant_levels({})


def test_render_dominant_uses_the_level_colors_and_keeps_the_rest() -> None:
    frame = _frame()
    labels = np.full((12, 16), NO_LEVEL, np.uint8)
    labels[:6, :8] = 1  # top-left quarter: the second level
    out = render_dominant(frame, labels, ("p3", "p4"), alpha=1.0)
    assert out.shape == frame.shape
    assert tuple(out[10, 10]) == LEVEL_COLORS["p4"]
    assert np.array_equal(out[60:, 80:], frame[60:, 80:])


def test_colormap_table_matches_the_color_map() -> None:
    lut = colormap_lut("magma")
    assert lut.shape == (256, 3) and lut.dtype == np.uint8 and not lut.flags.writeable
    ramp = np.linspace(0, 1, 256, dtype=np.float32)[None, :]
    assert np.array_equal(lut, colorize(ramp, "magma")[0])


def test_render_overlay_stretches_the_map_over_the_frame() -> None:
    frame = np.zeros((60, 80, 3), np.uint8)
    map_ = np.array([[0.0, 1.0]], np.float32)  # left low, right high
    out = render_overlay(frame, map_, "gray", alpha=1.0)
    assert out.shape == frame.shape
    assert out[30, 0].max() < 20 and out[30, 79].min() > 235


def test_legend_is_drawn_in_place_in_the_level_colors() -> None:
    image = np.zeros((240, 320, 3), np.uint8)
    assert draw_legend(image, ["p3", "p5"]) is image
    top = {tuple(p) for p in image[:30].reshape(-1, 3)}
    assert LEVEL_COLORS["p3"] in top and LEVEL_COLORS["p5"] in top
    assert image[100:].max() == 0


# ------------------------------------------------------------------------- the slot


def test_slot_keeps_only_the_latest_item() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True and slot.put(3) is True
    assert slot.take(0) == 3
    assert slot.take(0) is None, "nothing is queued behind the latest"
    assert (slot.put_count, slot.dropped) == (3, 2)
    slot.close()
    assert slot.take(None) is None
    with pytest.raises(RuntimeError):
        slot.put(4)


def test_frames_arriving_during_inference_are_dropped_latest_wins() -> None:
    """The consumer is busy with frame 0; frames 1..4 arrive; it then gets frame 4, and only it."""
    slot: LatestSlot[int] = LatestSlot()
    busy, release = threading.Event(), threading.Event()
    got: list[int] = []

    def consume() -> None:
        while (item := slot.take(5)) is not None:
            got.append(item)
            if item == 0:
                busy.set()
                release.wait(5)

    thread = threading.Thread(target=consume)
    thread.start()
    slot.put(0)
    assert busy.wait(5)
    for i in range(1, 5):
        slot.put(i)
    release.set()
    for _ in range(500):  # until the consumer has taken the next frame
        if len(got) == 2:
            break
        threading.Event().wait(0.01)
    slot.close()
    thread.join(5)
    assert got == [0, 4]
    assert slot.dropped == 3


def test_stats_over_the_last_second() -> None:
    now = [100.0]
    stats = LiveStats(window_s=1.0, clock=lambda: now[0])
    assert stats.snapshot().fps == 0 and stats.snapshot().latency_ms is None
    for i in range(10):
        now[0] = 100.0 + 0.1 * i
        stats.record(50.0 + i, {"p3": 0.75, "p4": 0.25} if i % 2 else {"p4": 1.0})
    snap = stats.snapshot(dropped=7)
    assert snap.frames == 10 and snap.fps == 10.0
    assert snap.latency_ms == pytest.approx(54.5)
    assert snap.shares == pytest.approx({"p3": 0.375, "p4": 0.625})
    assert snap.dominant == "p4" and snap.dropped == 7
    now[0] = 101.45  # the first five frames (100.0 .. 100.4) have left the window
    assert stats.snapshot().frames == 5


# ----------------------------------------------------------------- the runner, leaks


def _live_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def _serve_until_processed(runner: LiveRunner, frame: np.ndarray) -> np.ndarray:
    """Offer the frame until a processed image comes back (the camera keeps sending)."""
    for _ in range(3000):
        out = runner.offer(frame)
        if out is not frame:
            return out
        threading.Event().wait(0.01)
    raise AssertionError(f"no processed frame came back: {runner.snapshot()}")


def test_runner_streams_processed_frames_and_stop_frees_everything(pyramid) -> None:
    runner = LiveRunner(name="fpn-live-test")
    runner.configure(pyramid, LiveView(size=SIZE))
    frame = _frame()
    out = _serve_until_processed(runner, frame)
    assert out.shape == frame.shape and not np.array_equal(out, frame)
    snap = runner.snapshot()
    assert snap.frames >= 1 and snap.latency_ms is not None and snap.shares
    frame_ref, out_ref = weakref.ref(frame), weakref.ref(out)
    del frame, out
    runner.stop()
    gc.collect()
    assert not _live_threads("fpn-live-test")
    assert frame_ref() is None and out_ref() is None, "no frame or image is kept after Stop"
    assert runner._job is None, "no model reference is kept after Stop"
    assert runner.snapshot().frames == 0


def test_start_stop_cycles_leave_no_threads(pyramid) -> None:
    runner = LiveRunner(name="fpn-live-cycles")
    before = {t.ident for t in threading.enumerate()}
    for _ in range(5):
        runner.configure(pyramid, LiveView(size=SIZE))
        _serve_until_processed(runner, _frame())
        assert len(_live_threads("fpn-live-cycles")) == 1, "one thread per stream"
        runner.stop()
    after = {t.ident for t in threading.enumerate()}
    assert after <= before, [t.name for t in threading.enumerate() if t.ident not in before]


def test_runner_reports_a_failing_frame_and_keeps_going(pyramid) -> None:
    runner = LiveRunner(name="fpn-live-error")
    runner.configure(pyramid, LiveView(view="boxes", size=SIZE))  # a pyramid cannot draw boxes
    frame = _frame()
    for _ in range(3000):
        runner.offer(frame)
        if runner.snapshot().error:
            break
        threading.Event().wait(0.01)
    assert "detector" in (runner.snapshot().error or "")
    runner.configure(pyramid, LiveView(size=SIZE))
    _serve_until_processed(runner, frame)
    assert runner.snapshot().error is None
    runner.stop()
    assert not _live_threads("fpn-live-error")


# --------------------------------------------------------------------- sharing the device


def test_device_slots_are_handed_over_in_arrival_order() -> None:
    """A thread that releases and asks again queues behind those already waiting (no barging)."""
    slots = device.FairSlots(1)
    order: list[str] = []
    slots.acquire()  # the "stream" holds the slot

    def waiter(name: str) -> None:
        slots.acquire()
        order.append(name)
        slots.release()

    threads = []
    for name in ("a", "b"):
        t = threading.Thread(target=waiter, args=(name,))
        t.start()
        threads.append(t)
        for _ in range(500):  # until it waits in line
            if len(slots._waiting) == len(threads):
                break
            threading.Event().wait(0.01)
    assert len(slots._waiting) == 2
    slots.release()
    slots.acquire()  # the stream's next frame: behind a and b
    order.append("stream")
    slots.release()
    for t in threads:
        t.join(5)
    assert order == ["a", "b", "stream"]


def test_device_slot_is_released_on_error() -> None:
    cpu = torch.device("cpu")
    with pytest.raises(RuntimeError), device.device_slot(cpu):
        raise RuntimeError("boom")
    with device.device_slot(cpu):  # not left held
        pass


# --------------------------------------------------------------------------- ICE servers


def test_ice_servers_default_to_none_and_come_from_json() -> None:
    assert ice_servers_from_env({}) == ([], None)
    servers = [{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}]
    import json

    assert ice_servers_from_env({"FPN_ICE_SERVERS": json.dumps(servers)}) == (servers, None)
    assert ice_servers_from_env({"FPN_ICE_SERVERS": json.dumps({"iceServers": servers})}) == (servers, None)
    for bad in ("not json", '{"url": "x"}', "[1, 2]"):
        got, problem = ice_servers_from_env({"FPN_ICE_SERVERS": bad})
        assert got == [] and problem and "FPN_ICE_SERVERS" in problem
