"""Section 4: display-only changes run no forward pass, and overlays render fast.

Forward passes are counted by wrapping ``ResNetBackbone.forward`` and
``FPN.forward_steps`` on their classes, so every route into the network is seen
(``run_backbone``, ``run_fpn``, ``run_pyramid``, ``Pyramid.forward``, ``count_flops``)
whatever names a page imported. The dashboard is driven with streamlit's ``AppTest`` when
``pages/3_Overlays.py`` exists; otherwise its caching is simulated with the engine's own
split (``run_backbone`` keyed by image and size, ``run_fpn`` keyed by configuration), and the
report says which was used.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from . import ROOT
from .forward import C2_C5, C3_C5, pyramid_for
from .measure import Context, repeat_ms, square_image
from .report import Row, Table, fmt

SECTION = "4 display-only changes and overlay rendering"
OVERLAYS_PAGE = ROOT / "pages" / "3_Overlays.py"
#: Words that identify the display widgets by key or label.
DISPLAY_WIDGETS: dict[str, tuple[str, ...]] = {
    "alpha": ("alpha", "opacity", "blend"),
    "colormap": ("colormap", "colormap", "color map", "color map"),
    "aggregation": ("aggregation", "reduce", "channel summary", "aggregat"),
}


class ForwardCounter:
    """Counts backbone and FPN forward passes while active (class-level wrappers, restored on exit)."""

    def __init__(self) -> None:
        self.backbone = 0
        self.fpn = 0

    def snapshot(self) -> tuple[int, int]:
        return self.backbone, self.fpn

    @contextmanager
    def active(self) -> Iterator[ForwardCounter]:
        from fpn_core.backbone import ResNetBackbone
        from fpn_core.fpn import FPN

        bb_forward, fpn_steps = ResNetBackbone.forward, FPN.forward_steps

        def counted_backbone(module, *args, **kwargs):
            self.backbone += 1
            return bb_forward(module, *args, **kwargs)

        def counted_fpn(module, *args, **kwargs):
            self.fpn += 1
            return fpn_steps(module, *args, **kwargs)

        ResNetBackbone.forward = counted_backbone  # type: ignore[method-assign]
        FPN.forward_steps = counted_fpn  # type: ignore[method-assign]
        try:
            yield self
        finally:
            ResNetBackbone.forward = bb_forward  # type: ignore[method-assign]
            FPN.forward_steps = fpn_steps  # type: ignore[method-assign]


# ------------------------------------------------------------------ driving the real page


def _find(at, kind: str, key: object):
    """The widget ``kind`` with ``key`` in the current element tree (AppTest replaces it on each run)."""
    return next(w for w in at.get(kind) if getattr(w, "key", None) == key)


def _widget_value(at, kind: str, key: object) -> object:
    try:
        return _find(at, kind, key).value
    except Exception:
        return "?"


def _change_widget(at, kind: str, key: object) -> None:
    """Move a display widget to another value (max/min for a slider, another option otherwise)."""
    w = _find(at, kind, key)
    if kind == "slider":
        w.set_value(w.max if w.value != w.max else w.min)
    elif kind == "selectbox":
        w.select_index(1 if (w.index or 0) == 0 else 0)
    else:
        options = list(w.options)
        w.set_value(next((o for o in options if o != str(w.value)), options[0]))


def _widget_changes(at) -> list[tuple[str, str, Callable[[], None], Callable[[], object]]]:
    """(category, description, action that changes it, reader of its value) per display widget found."""
    found = []
    for kind in ("slider", "select_slider", "selectbox", "radio", "segmented_control"):
        try:
            widgets = list(at.get(kind))
        except Exception:  # noqa: S112 - an element kind this streamlit version lacks
            continue
        for w in widgets:
            key = getattr(w, "key", None)
            ident = f"{key or ''} {getattr(w, 'label', '') or ''}".lower()
            category = next((c for c, words in DISPLAY_WIDGETS.items() if any(x in ident for x in words)), None)
            if category is None or key is None:
                continue
            desc = f"{kind} {key!r} ({getattr(w, 'label', '')!r})"
            found.append(
                (
                    category,
                    desc,
                    functools.partial(_change_widget, at, kind, key),
                    functools.partial(_widget_value, at, kind, key),
                )
            )
    return found


def _drive_page(ctx: Context, counter: ForwardCounter) -> list[tuple[str, int, int, str]] | str:
    """Run the overlays page with AppTest and change each display widget; returns rows or why it failed."""
    from streamlit.testing.v1 import AppTest

    attempts = []
    dashboard = ROOT / "dashboard.py"
    if dashboard.is_file():  # the frame first: pages read the sidebar it draws
        attempts.append(("dashboard -> switch_page", lambda: AppTest.from_file(str(dashboard), default_timeout=300)))
    attempts.append(("page", lambda: AppTest.from_file(str(OVERLAYS_PAGE), default_timeout=300)))
    errors = []
    for how, make in attempts:
        at = make()
        try:
            at.run()
            if how != "page":
                at.switch_page("pages/3_Overlays.py").run()
        except Exception as exc:
            errors.append(f"{how}: {type(exc).__name__}: {str(exc)[:160]}")
            continue
        if at.exception:
            errors.append(f"{how}: page raised {str(at.exception[0].value)[:160]}")
            continue
        first = counter.snapshot()
        rows = [(f"first render ({how})", first[0], first[1], "")]
        changes = _widget_changes(at)
        if not changes:
            return f"{how}: no alpha / colormap / aggregation widget found by key or label"
        for category, desc, change, read in changes:
            before = counter.snapshot()
            old = read()
            t0 = time.perf_counter()
            change()
            at.run()
            ms = (time.perf_counter() - t0) * 1e3
            after = counter.snapshot()
            note = f"{desc}: {old!r} -> {read()!r}; rerun {ms:.0f} ms" + ("; page raised" if at.exception else "")
            rows.append((category, after[0] - before[0], after[1] - before[1], note))
        return rows
    return "; ".join(errors)


# ------------------------------------------------------------------ simulated caching


def _simulate(ctx: Context, counter: ForwardCounter) -> list[tuple[str, int, int, str]]:
    """The caching the dashboard is meant to have, with the engine's split of backbone and FPN."""
    from fpn_core import PyramidConfig, run_backbone, run_fpn
    from fpn_core.maps import aggregate_channels, overlay

    backbone_cache: dict = {}
    fpn_cache: dict = {}
    image = square_image(512)

    def render(size: int, out_channels: int, alpha: float, colormap: str, aggregation: str) -> None:
        model = pyramid_for(ctx, C3_C5, out_channels)
        bb_key = ("astronaut", size)
        if bb_key not in backbone_cache:
            backbone_cache[bb_key] = run_backbone(model.backbone, image, size=size)
        bb = backbone_cache[bb_key]
        fpn_key = (bb_key, model.config)
        if fpn_key not in fpn_cache:
            fpn_cache[fpn_key] = run_fpn(model.fpn, bb.stages, model.config)
        for level in fpn_cache[fpn_key].levels.values():
            overlay(bb.image, aggregate_channels(level, aggregation), alpha=alpha, colormap=colormap)

    assert PyramidConfig  # the cache keys are PyramidConfig instances (frozen, hashable)
    steps = [
        ("first render", dict(size=512, out_channels=256, alpha=0.5, colormap="jet", aggregation="mean")),
        ("alpha", dict(size=512, out_channels=256, alpha=0.8, colormap="jet", aggregation="mean")),
        ("colormap", dict(size=512, out_channels=256, alpha=0.8, colormap="viridis", aggregation="mean")),
        ("aggregation", dict(size=512, out_channels=256, alpha=0.8, colormap="viridis", aggregation="l2")),
        (
            "width 256 -> 64 (control: FPN only)",
            dict(size=512, out_channels=64, alpha=0.8, colormap="viridis", aggregation="l2"),
        ),
    ]
    rows = []
    for name, kwargs in steps:
        before = counter.snapshot()
        render(**kwargs)
        after = counter.snapshot()
        rows.append((name, after[0] - before[0], after[1] - before[1], ""))
    return rows


# ------------------------------------------------------------------ section


def run(ctx: Context) -> None:
    rep = ctx.report
    rep.section(SECTION)
    counter = ForwardCounter()
    with counter.active():
        if OVERLAYS_PAGE.is_file():
            mode = "streamlit AppTest on pages/3_Overlays.py"
            result = _drive_page(ctx, counter)
            if isinstance(result, str):
                rep.note(SECTION, f"AppTest could not drive the page ({result}); falling back to the simulation")
                mode = "simulated caching (AppTest failed)"
                counter.backbone = counter.fpn = 0
                result = _simulate(ctx, counter)
        else:
            why = "pages/3_Overlays.py does not exist yet"
            if (ROOT / "ui" / "cache.py").is_file():
                why += " (ui/cache.py exists, but its API is the dashboard's; AppTest is used once the page exists)"
            mode = f"simulated caching: {why}"
            result = _simulate(ctx, counter)
    rep.note(
        SECTION,
        f"forward counting: class-level wrappers on ResNetBackbone.forward and FPN.forward_steps; mode: {mode}",
    )
    table = Table(SECTION, "forward passes per change", ["change", "backbone forwards", "FPN forwards", "note"])
    for name, bb, fp, note in result:
        table.rows.append([name, str(bb), str(fp), note])
        if name in DISPLAY_WIDGETS:
            rep.row(Row(SECTION, f"{name} change: forward passes", float(bb + fp), "", 0.0, "<=", f"{note} ({mode})"))
    for category in DISPLAY_WIDGETS:
        if not any(name == category for name, *_ in result):
            rep.row(Row(SECTION, f"{category} change: forward passes", None, skipped=f"no {category} widget found"))
    rep.table(table)
    _render_times(ctx)


def _render_times(ctx: Context) -> None:
    """Overlay arrays for every level (< 100 ms), and the matplotlib figure route to PNG."""
    from fpn_core import run_pyramid
    from fpn_core.figures import figure_to_png, overlay_figure
    from fpn_core.maps import aggregate_channels, overlay

    rep = ctx.report
    size = 512
    image = square_image(size)
    reps = 3 if ctx.quick else max(ctx.pairs, 5)
    for stages in (C2_C5,) if ctx.quick else (C2_C5, C3_C5):
        model = pyramid_for(ctx, stages, 256)
        out = run_pyramid(model, image, size=size)
        names = list(out.levels)

        def overlays(out=out):
            return [
                overlay(out.image, aggregate_channels(lv, "mean"), alpha=0.5, colormap="jet")
                for lv in out.levels.values()
            ]

        times = repeat_ms(overlays, repeats=reps, warmup=1, device=ctx.device)
        rep.row(
            Row(
                SECTION,
                f"overlay() for all {len(names)} levels ({','.join(names)}) at {size} px",
                statistics.median(times),
                " ms",
                100.0,
                "<",
                f"aggregate_channels(mean) + overlay per level, median of {reps} (min {fmt(min(times))}, max "
                f"{fmt(max(times))})",
            )
        )

    # The figure route (c2..c5: five levels), as a download draws it: build, then PNG.
    model = pyramid_for(ctx, C2_C5, 256)
    out = run_pyramid(model, image, size=size)
    maps = {k: aggregate_channels(v, "mean") for k, v in out.levels.items()}

    def engine_png(fig, dpi):
        return figure_to_png(fig, dpi=dpi)

    # The pages show overlay() arrays (above); the annotated figure is drawn only for a download.
    variants = [("figure_to_png (the PNG download at 1x, drawn on demand), dpi 100", engine_png, 100, False)]
    rounds = 1 if ctx.quick else 3
    times: dict[str, list[tuple[float, float, int]]] = {v[0]: [] for v in variants}
    for _ in range(rounds):  # round-robin over the variants
        for name, save, dpi, _target in variants:
            t0 = time.perf_counter()
            figs = [overlay_figure(out.image, m, title=f"{k}: channel mean") for k, m in maps.items()]
            t1 = time.perf_counter()
            nbytes = sum(len(save(fig, dpi)) for fig in figs)
            times[name].append(((t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3, nbytes))
    for name, _save, _dpi, is_target in variants:
        build = statistics.median(t[0] for t in times[name])
        png = statistics.median(t[1] for t in times[name])
        total = statistics.median(t[0] + t[1] for t in times[name])
        detail = (
            f"build {fmt(build)} ms + encode {fmt(png)} ms, median of {rounds}; {fmt(total / len(maps))} ms per "
            f"level; {times[name][-1][2] / 1e6:.1f} MB"
        )
        rep.row(
            Row(
                SECTION,
                f"overlay_figure + {name}, all {len(maps)} levels at {size} px",
                total,
                " ms",
                100.0 if is_target else None,
                "<",
                detail,
            )
        )
