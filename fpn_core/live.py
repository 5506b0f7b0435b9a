"""Live camera: the pyramid (or a detector) on every frame of a video stream, numpy in, numpy out.

No streamlit here: ``ui/live_page.py`` feeds camera frames to a :class:`LiveRunner` and sends
back what it returns. Per frame (:func:`process_frame`): one resize in (to the live size), one
forward under ``torch.inference_mode`` on the shared read-only model, small per-level maps, one
resize out (to the frame's size), a color lookup table, a blend and a small legend. No
matplotlib runs per frame (the color maps are 256-entry tables built once).

Sharing the server:

- each viewer has one :class:`LatestSlot`: a frame that arrives while the previous one is being
  processed waits in the slot, and a newer frame replaces it (the older one is dropped, never
  queued), so the latency stays one frame whatever the camera's rate;
- every forward holds one of the device's inference slots (``device.device_slot``), handed over
  in arrival order, so several viewers take turns and the other pages' analyses get theirs.

What each view shows:

- ``"dominant"``: each pixel in the color of the level whose normalized response is highest there
  (:func:`dominant_levels`): a level's response is the root mean square over its channels,
  normalized over the frame (minus its mean, divided by its standard deviation), so levels of
  different strength compare; where no level stands out (every z below :data:`DOMINANT_Z`) the
  camera image shows through;
- ``"overlay"``: one level's channel aggregate, colored with a color map and blended;
- ``"boxes"``: a detector's boxes, each in the color of the level that found it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Generic, TypeVar

import cv2
import numpy as np
import torch
from torch import Tensor

from .device import device_slot
from .images import check_rgb, resize_long_side, to_tensor
from .levels import LEVEL_COLORS
from .maps import CHANNEL_AGGREGATIONS, aggregate_channels, colorize
from .pyramid import Pyramid, pad_input

if TYPE_CHECKING:
    from .detection import Detector

__all__ = [
    "DEFAULT_LIVE_SIZE",
    "DOMINANT_Z",
    "ICE_SERVERS_ENV",
    "LIVE_SIZE_BOUNDS",
    "NO_LEVEL",
    "VIEWS",
    "FrameOutput",
    "LatestSlot",
    "LiveRunner",
    "LiveSnapshot",
    "LiveStats",
    "LiveView",
    "colormap_lut",
    "dominant_levels",
    "draw_legend",
    "ice_servers_from_env",
    "level_responses",
    "level_shares",
    "process_frame",
    "render_boxes",
    "render_dominant",
    "render_overlay",
]

#: The live size (long side of the network input, px): low, high, step.
LIVE_SIZE_BOUNDS: tuple[int, int, int] = (160, 384, 32)
DEFAULT_LIVE_SIZE = 256
VIEW_DOMINANT, VIEW_OVERLAY, VIEW_BOXES = "dominant", "overlay", "boxes"
VIEWS: tuple[str, ...] = (VIEW_DOMINANT, VIEW_OVERLAY, VIEW_BOXES)
#: A pixel takes its dominant level's color only where that level's normalized response is at
#: least this many standard deviations above its mean over the frame.
DOMINANT_Z = 1.0
#: Label of a pixel where no level stands out.
NO_LEVEL = 255
#: The statistics (frame rate, latency, level shares) cover this many seconds.
STATS_WINDOW_S = 1.0
#: A viewer's worker thread ends after this long without a frame (a tab closed without Stop).
IDLE_STOP_S = 10.0
#: Detections drawn per frame at most (the best first).
MAX_BOXES = 20
#: An untrained detector's boxes are noise: only its best few are drawn.
UNTRAINED_BOXES = 5
#: Environment variable with the ICE servers for remote viewers, as JSON (a list of RTCIceServer).
ICE_SERVERS_ENV = "FPN_ICE_SERVERS"

T = TypeVar("T")


# --------------------------------------------------------------------------------- setup


def ice_servers_from_env(environ: Mapping[str, str]) -> tuple[list[dict], str | None]:
    """The ICE servers an operator set in ``FPN_ICE_SERVERS``, or none (localhost and a LAN need none).

    Args:
        environ: the environment (``os.environ``).

    Returns:
        The servers (``[{"urls": [...], "username": ..., "credential": ...}, ...]``; empty when the
        variable is unset), and a message when the variable is set but unusable (then none are used).
    """
    raw = environ.get(ICE_SERVERS_ENV, "").strip()
    if not raw:
        return [], None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return [], f"{ICE_SERVERS_ENV} is not valid JSON ({exc.msg}); no ICE servers are used."
    if isinstance(value, dict) and "iceServers" in value:
        value = value["iceServers"]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, dict) and s.get("urls") for s in value):
        return [], (
            f"{ICE_SERVERS_ENV} must be a JSON list of servers like "
            '[{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}]; '
            "no ICE servers are used."
        )
    return value, None


@dataclass(frozen=True)
class LiveView:
    """What a viewer asked to see.

    Attributes:
        view: one of :data:`VIEWS`.
        size: long side of the network input, in pixels (:data:`LIVE_SIZE_BOUNDS`).
        level: the level of the ``"overlay"`` view (None: the model's finest).
        aggregation: channel aggregation of the ``"overlay"`` view (``fpn_core.maps``).
        colormap: color map of the ``"overlay"`` view.
        alpha: weight of the colors over the camera image, 0 to 1.
        score: the ``"boxes"`` view keeps detections scoring at least this (trained detectors).
    """

    view: str = VIEW_DOMINANT
    size: int = DEFAULT_LIVE_SIZE
    level: str | None = None
    aggregation: str = "mean"
    colormap: str = "viridis"
    alpha: float = 0.55
    score: float = 0.5

    def __post_init__(self) -> None:
        lo, hi, _ = LIVE_SIZE_BOUNDS
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {self.view!r}")
        if not lo <= int(self.size) <= hi:
            raise ValueError(f"live size must be from {lo} to {hi} pixels, got {self.size}")
        if self.aggregation not in CHANNEL_AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {', '.join(CHANNEL_AGGREGATIONS)}, got {self.aggregation!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {self.score}")


@dataclass(frozen=True)
class FrameOutput:
    """One processed frame.

    Attributes:
        image: RGB uint8 of the camera frame's size: what is sent back.
        shares: each level's share of this frame: of the colored pixels (``"dominant"``), of the
            response (``"overlay"``: each level's mean normalized response over their sum) or of
            the boxes drawn (``"boxes"``). Empty where nothing stood out or nothing was found.
    """

    image: np.ndarray
    shares: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------- drawing


@lru_cache(maxsize=16)
def colormap_lut(colormap: str) -> np.ndarray:
    """A color map as a 256-entry RGB uint8 lookup table (built once per color map; read-only)."""
    lut = colorize(np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :], colormap)[0]
    lut = np.ascontiguousarray(lut, dtype=np.uint8)
    lut.setflags(write=False)
    return lut


@lru_cache(maxsize=16)
def _level_palette(names: tuple[str, ...]) -> np.ndarray:
    """Label -> RGB: entry ``i`` is level ``names[i]``'s app-wide color (256 entries; read-only)."""
    palette = np.zeros((256, 3), np.uint8)
    for i, name in enumerate(names):
        palette[i] = LEVEL_COLORS.get(name, (255, 255, 255))
    palette.setflags(write=False)
    return palette


def _blend(frame: np.ndarray, color: np.ndarray, alpha: float) -> np.ndarray:
    return cv2.addWeighted(frame, 1.0 - alpha, color, alpha, 0.0)


def draw_legend(image: np.ndarray, names: Sequence[str], title: str | None = None) -> np.ndarray:
    """Draw a small legend in place at the top left: a swatch in each level's color and its name.

    Args:
        image: RGB uint8, written in place (and returned).
        names: the levels, fine to coarse.
        title: a word before the swatches (e.g. the view), or None.
    """
    scale = max(0.5, max(image.shape[:2]) / 640)  # readable on a 320 px frame shown a column wide
    sw = round(14 * scale)
    pad = max(2, round(4 * scale))
    font, fscale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, 1
    x, y = pad, pad
    items: list[tuple[str, tuple[int, int, int] | None]] = [(title, None)] if title else []
    items += [(name, LEVEL_COLORS.get(name, (255, 255, 255))) for name in names]
    widths = [(sw + pad if color else 0) + cv2.getTextSize(text, font, fscale, thick)[0][0] for text, color in items]
    width = sum(widths) + pad * (len(items) + 1)
    cv2.rectangle(image, (0, 0), (min(image.shape[1] - 1, width), sw + 2 * pad), (0, 0, 0), -1)
    for (text, color), w in zip(items, widths, strict=True):
        if color is not None:
            cv2.rectangle(image, (x, y), (x + sw, y + sw), color, -1)
            tx = x + sw + pad
        else:
            tx = x
        cv2.putText(image, text, (tx, y + sw - max(1, sw // 6)), font, fscale, (255, 255, 255), thick, cv2.LINE_AA)
        x += w + pad
    return image


def render_overlay(frame: np.ndarray, map_: np.ndarray, colormap: str, alpha: float) -> np.ndarray:
    """One small map, stretched to its own min..max, resized once to the frame, colored and blended.

    Args:
        frame: RGB uint8 ``(H, W, 3)``.
        map_: 2-D float map at any resolution.
        colormap: a color map name (``fpn_core.maps.COLORMAPS``).
        alpha: weight of the color.

    Returns:
        RGB uint8 ``(H, W, 3)``.
    """
    values = np.asarray(map_, dtype=np.float32)
    lo, hi = float(values.min()), float(values.max())
    scaled = (values - lo) * (255.0 / max(hi - lo, 1e-6))
    small = np.clip(scaled, 0, 255).astype(np.uint8)
    big = cv2.resize(small, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
    return _blend(frame, colormap_lut(colormap)[big], alpha)


def render_dominant(frame: np.ndarray, labels: np.ndarray, names: Sequence[str], alpha: float) -> np.ndarray:
    """The frame with each labelled pixel in its level's color (labels resized once, nearest).

    Args:
        frame: RGB uint8 ``(H, W, 3)``.
        labels: ``(h, w)`` uint8: an index into ``names``, or :data:`NO_LEVEL`.
        names: the levels, fine to coarse.
        alpha: weight of the level colors.
    """
    big = cv2.resize(labels, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST)
    color = _level_palette(tuple(names))[big]
    none = big == NO_LEVEL
    color[none] = frame[none]
    return _blend(frame, color, alpha)


def render_boxes(frame: np.ndarray, boxes: Sequence[Sequence[float]], levels: Sequence[str]) -> np.ndarray:
    """A copy of the frame with each box outlined in its level's color (best box drawn last)."""
    out = frame.copy()
    h, w = frame.shape[:2]
    line = max(2, round(max(h, w) / 160))
    for i in range(len(boxes) - 1, -1, -1):
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        p1 = (int(np.clip(x1, 0, w - 1)), int(np.clip(y1, 0, h - 1)))
        p2 = (int(np.clip(x2, 0, w - 1)), int(np.clip(y2, 0, h - 1)))
        cv2.rectangle(out, p1, p2, LEVEL_COLORS.get(levels[i], (255, 255, 255)), line)
    return out


# ------------------------------------------------------------------------------ levels


def level_responses(levels: Mapping[str, Tensor], how: str = "l2") -> dict[str, np.ndarray]:
    """Each level's response: its channels aggregated (``fpn_core.maps.aggregate_channels``) at its own size."""
    return {name: aggregate_channels(t, how) for name, t in levels.items()}


def dominant_levels(
    responses: Mapping[str, np.ndarray], threshold: float = DOMINANT_Z
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Which level answers most strongly where, on the finest level's grid.

    Each response is brought to the finest grid (bilinear) and normalized over the frame
    (z-score: minus its mean, divided by its standard deviation), so a level that is strong
    everywhere does not win everywhere. Each cell gets the level with the highest z, or
    :data:`NO_LEVEL` where no z reaches ``threshold``.

    Args:
        responses: level name -> 2-D response, fine to coarse (the first sets the grid).
        threshold: the least z that counts as standing out.

    Returns:
        ``(h, w)`` uint8 labels (indices into the names) and the level names.

    Raises:
        ValueError: no responses, or more than 254 levels.
    """
    names = tuple(responses)
    if not names:
        raise ValueError("dominant_levels needs at least one level")
    if len(names) >= NO_LEVEL:
        raise ValueError(f"at most {NO_LEVEL - 1} levels, got {len(names)}")
    h, w = np.asarray(responses[names[0]]).shape
    stack = np.empty((len(names), h, w), np.float32)
    for i, name in enumerate(names):
        r = np.asarray(responses[name], dtype=np.float32)
        if r.shape != (h, w):
            r = cv2.resize(r, (w, h), interpolation=cv2.INTER_LINEAR)
        std = float(r.std())
        stack[i] = (r - float(r.mean())) / std if std > 1e-12 else 0.0
    labels = stack.argmax(axis=0).astype(np.uint8)
    labels[stack.max(axis=0) < threshold] = NO_LEVEL
    return labels, names


def level_shares(labels: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Each level's share of the labelled cells (summing to 1; empty where none stands out)."""
    counts = np.bincount(labels.ravel(), minlength=256)[: len(names)]
    total = int(counts.sum())
    if total == 0:
        return {}
    return {name: float(c) / total for name, c in zip(names, counts, strict=True)}


# ------------------------------------------------------------------------------ one frame


def _is_detector(model: Pyramid | Detector) -> bool:
    return not isinstance(model, Pyramid)


def _pyramid_levels(model: Pyramid, frame: np.ndarray, size: int) -> dict[str, Tensor]:
    """The pyramid's levels on the frame resized to ``size`` (the one resize in)."""
    backbone = model.backbone  # type: ignore[attr-defined]
    small = resize_long_side(frame, size)
    h, w = small.shape[:2]
    _, x = pad_input(small, to_tensor(small, backbone.mean, backbone.std), backbone)
    if backbone.folded:
        x = x.contiguous(memory_format=torch.channels_last)
    device = backbone.device
    with device_slot(device), torch.inference_mode():
        levels = model(x.to(device))
    # A framework's padding (bottom, right) is cut off again: each map covers the frame alone.
    hp, wp = x.shape[-2:]
    return {k: v[..., : -(-h * v.shape[-2] // hp), : -(-w * v.shape[-1] // wp)] for k, v in levels.items()}


def _detector_run(det: Detector, frame: np.ndarray, size: int, boxes: bool) -> tuple[dict[str, Tensor], object]:
    """The detector's pyramid on the frame, and its detections when ``boxes`` (the one place it is called).

    The detector resizes the frame to ``size`` itself (its own transform: the one resize in).
    """
    from .detection import run_detector_features, run_heads

    features = run_detector_features(det, frame, size=size)
    if not boxes:
        return dict(features.levels), None
    trained = det.provenance.pretrained
    dets = run_heads(det, features, top_k=0, min_score=None if trained else 0.0)
    return dict(features.levels), (dets, trained)


def process_frame(model: Pyramid | Detector, frame: np.ndarray, view: LiveView) -> FrameOutput:
    """Run the model on one camera frame and draw what ``view`` asks for, at the frame's size.

    Args:
        model: a ``Pyramid`` (``fpn_core.build_pyramid``) or a detector (``fpn_core.detection.build_detector``),
            shared and read-only.
        frame: RGB uint8 ``(H, W, 3)``.
        view: what to draw.

    Returns:
        The image to send back (same size as ``frame``) and the level shares.

    Raises:
        ValueError: a bad frame, or the ``"boxes"`` view without a detector.
    """
    check_rgb(frame)
    detector = _is_detector(model)
    if view.view == VIEW_BOXES and not detector:
        raise ValueError("the boxes view needs a detector")
    if detector:
        levels, found = _detector_run(model, frame, view.size, view.view == VIEW_BOXES)
    else:
        levels, found = _pyramid_levels(model, frame, view.size), None
    names = tuple(levels)
    if found is not None:
        dets, trained = found  # type: ignore[misc]
        keep = [i for i, s in enumerate(dets.scores.tolist()) if not trained or s >= view.score]
        keep = keep[: MAX_BOXES if trained else UNTRAINED_BOXES]
        kept_levels = [dets.levels[i] for i in keep]
        image = render_boxes(frame, dets.boxes[keep].tolist(), kept_levels)
        shares = {n: kept_levels.count(n) / len(keep) for n in names if n in kept_levels} if keep else {}
        return FrameOutput(draw_legend(image, names, "boxes"), shares)
    if view.view == VIEW_OVERLAY:
        level = view.level if view.level in levels else names[0]
        map_ = aggregate_channels(levels[level], view.aggregation)
        image = render_overlay(frame, map_, view.colormap, view.alpha)
        rms = level_responses(levels)
        means = {n: float(r.mean()) for n, r in rms.items()}
        total = sum(means.values())
        shares = {n: m / total for n, m in means.items()} if total > 0 else {}
        return FrameOutput(draw_legend(image, [level], view.colormap), shares)
    labels, names = dominant_levels(level_responses(levels))
    image = render_dominant(frame, labels, names, view.alpha)
    return FrameOutput(draw_legend(image, names), level_shares(labels, names))


# ---------------------------------------------------------------------------- sharing


class LatestSlot(Generic[T]):
    """One waiting place: a new item replaces the one waiting (which is dropped), never a queue.

    The producer (the camera) :meth:`put`\\ s every frame; the consumer (the inference thread)
    :meth:`take`\\ s the latest one when it is free. A frame that arrives while the previous one is
    still being processed waits here until a newer one arrives; then it is dropped.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        #: Items put, and items dropped because a newer one replaced them.
        self.put_count = 0
        self.dropped = 0

    def put(self, item: T) -> bool:
        """Offer an item; returns True when it replaced (dropped) one that was waiting.

        Raises:
            RuntimeError: the slot is closed.
        """
        with self._cond:
            if self._closed:
                raise RuntimeError("the slot is closed")
            replaced = self._full
            self.put_count += 1
            self.dropped += int(replaced)
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The latest item, waiting up to ``timeout`` s (None: forever); None when closed or timed out."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                return None
            if self._closed:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        """Drop what waits and wake the consumer: :meth:`take` returns None from now on."""
        with self._cond:
            self._closed = True
            self._item, self._full = None, False
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


@dataclass(frozen=True)
class LiveSnapshot:
    """The statistics over the last :data:`STATS_WINDOW_S`.

    Attributes:
        fps: frames processed per second.
        latency_ms: median time from a frame's arrival to its processed image (None: no frame).
        shares: each level's mean share over the processed frames.
        frames: frames processed in the window.
        dropped: frames dropped since the stream started (a newer one replaced them).
        error: the last frame's error, if it failed.
    """

    fps: float
    latency_ms: float | None
    shares: dict[str, float]
    frames: int
    dropped: int = 0
    error: str | None = None

    @property
    def dominant(self) -> str | None:
        """The level with the largest share (None without shares)."""
        return max(self.shares, key=self.shares.__getitem__) if self.shares else None


class LiveStats:
    """Frame rate, latency and level shares over a sliding window (thread-safe)."""

    def __init__(self, window_s: float = STATS_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._done: deque[tuple[float, float, dict[str, float]]] = deque()

    def record(self, latency_ms: float, shares: Mapping[str, float]) -> None:
        """One processed frame: its latency and its level shares."""
        now = self._clock()
        with self._lock:
            self._done.append((now, float(latency_ms), dict(shares)))
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._done and self._done[0][0] < now - self.window_s:
            self._done.popleft()

    def snapshot(self, dropped: int = 0, error: str | None = None) -> LiveSnapshot:
        """The statistics now."""
        with self._lock:
            self._trim(self._clock())
            done = list(self._done)
        if not done:
            return LiveSnapshot(0.0, None, {}, 0, dropped, error)
        totals: dict[str, float] = {}
        for _, _, shares in done:
            for name, share in shares.items():
                totals[name] = totals.get(name, 0.0) + share
        shares = {name: total / len(done) for name, total in totals.items()}
        latency = float(np.median([lat for _, lat, _ in done]))
        return LiveSnapshot(len(done) / self.window_s, latency, shares, len(done), dropped, error)

    def clear(self) -> None:
        with self._lock:
            self._done.clear()


class LiveRunner:
    """One viewer's stream: a :class:`LatestSlot`, one inference thread while it streams, the statistics.

    The camera side calls :meth:`offer` with every frame and sends back what it returns (the
    latest processed image; the frame itself until the first one is ready). :meth:`configure`
    swaps the model and view between frames. :meth:`stop` ends the thread and drops every
    frame, image and model reference; a later :meth:`offer` starts again.
    """

    def __init__(self, name: str = "fpn-live", idle_stop_s: float = IDLE_STOP_S) -> None:
        self.name = name
        self.idle_stop_s = idle_stop_s
        self.stats = LiveStats()
        self._lock = threading.Lock()
        self._job: tuple[Pyramid | Detector, LiveView] | None = None
        self._slot: LatestSlot[tuple[float, np.ndarray]] = LatestSlot()
        self._thread: threading.Thread | None = None
        self._output: np.ndarray | None = None
        self._error: str | None = None
        self._dropped = 0

    # -- the page's side

    def configure(self, model: Pyramid | Detector, view: LiveView) -> None:
        """Use ``model`` (shared, read-only) and ``view`` from the next frame on."""
        with self._lock:
            self._job = (model, view)

    def snapshot(self) -> LiveSnapshot:
        """Frame rate, latency and level shares over the last second."""
        with self._lock:
            dropped = self._dropped + self._slot.dropped
            error = self._error
        return self.stats.snapshot(dropped, error)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def stop(self, timeout: float = 30.0, *, wait: bool = True) -> None:
        """End the inference thread (after the frame it is on) and drop frames, images and the model.

        Args:
            timeout: the longest wait for the thread, in seconds.
            wait: wait for the thread to end (False from a thread that must not block, e.g. an event loop).
        """
        with self._lock:
            slot, thread = self._slot, self._thread
            self._thread = None
            self._dropped += slot.dropped
            self._slot = LatestSlot()
            self._output = None
            self._job = None
            self._error = None
        slot.close()
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self.stats.clear()

    # -- the camera's side

    def offer(self, frame: np.ndarray) -> np.ndarray:
        """Hand a camera frame to the inference thread (starting it if needed); return the image to send.

        Never waits for inference: the frame replaces any frame still waiting.
        """
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                if self._slot.closed:
                    self._slot = LatestSlot()
                self._thread = threading.Thread(target=self._work, args=(self._slot,), name=self.name, daemon=True)
                self._thread.start()
            slot, output = self._slot, self._output
        slot.put((time.monotonic(), frame))
        if output is None or output.shape != frame.shape:
            return frame
        return output

    def _work(self, slot: LatestSlot[tuple[float, np.ndarray]]) -> None:
        while True:
            item = slot.take(self.idle_stop_s)
            if item is None:
                break
            arrived, frame = item
            with self._lock:
                job = self._job
            if job is None:
                continue
            model, view = job
            try:
                out = process_frame(model, frame, view)
            except Exception as exc:  # a bad frame or a model that cannot do the view: say so, keep streaming
                with self._lock:
                    self._error = f"{type(exc).__name__}: {exc}"
                continue
            finally:
                del item, frame, job, model
            self.stats.record((time.monotonic() - arrived) * 1e3, out.shares)
            with self._lock:
                if self._slot is slot:  # not stopped meanwhile
                    self._output = out.image
                    self._error = None
        with self._lock:
            if self._slot is slot:
                self._output = None
                if self._thread is threading.current_thread():
                    self._thread = None
