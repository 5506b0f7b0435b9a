"""The frame every page runs in: page config, navigation, the sidebar, the link, the weights notice.

``dashboard.py`` calls :func:`run` and nothing else. Per run, in order: page config, the
navigation (``st.navigation`` over the files in ``pages/``), the sidebar (drawn once, here, so
its widgets keep their values on every page), the link's warnings, the weights notice, then
the chosen page's file. Pages read the sidebar with :func:`settings`.

Each ``st.Page`` has an explicit ``url_path`` that differs from the name streamlit derives from
the file name (``pages/3_Overlays.py`` -> ``Overlays``): where the two are equal, a fresh
session opening that URL runs the page file alone, without the frame (seen on streamlit 1.67).
"""

from __future__ import annotations

import dataclasses
import gc
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components
from streamlit.runtime.pages_manager import PagesManager
from streamlit.runtime.scriptrunner import get_script_run_ctx

from fpn_core import Provenance
from fpn_core.pyramid import describe_fpn_weights
from fpn_core.weights import IMAGENET, WEIGHT_FILES, WEIGHTS_ENV, how_to_place
from ui import cache, loading, sidebar
from ui import settings as S

ROOT = Path(__file__).resolve().parents[1]
#: Session-state entry: the weights notices already shown in full in this session.
NOTICES_SEEN = "_weights_notices_seen"


#: The sidebar controls that shape the pyramid above the backbone.
FPN_KEYS = frozenset({S.KEY_OUT_CHANNELS, S.KEY_STAGES, S.KEY_UPSAMPLE, S.KEY_MERGE, S.KEY_P6})
#: The sidebar controls that only change how maps are drawn.
MAP_STYLE_KEYS = frozenset({S.KEY_AGGREGATION, S.KEY_COLORMAP, S.KEY_ALPHA, S.KEY_SCOPE})


@dataclass(frozen=True)
class PageSpec:
    """One page of the app: its file in ``pages/``, title, icon, URL path and menu section.

    ``ignores`` names the sidebar controls the page does not read: each is drawn in a fragment of
    its own, so changing it does not rerun the page and the browser redraws one widget. A test
    changes each one and checks that the page's elements stay the same.
    """

    file: str
    title: str
    icon: str
    url_path: str
    section: str
    ignores: frozenset[str] = frozenset()

    @property
    def shows_fpn(self) -> bool:
        """Whether the page shows the pyramid (else the weights notice speaks of the backbone alone)."""
        return S.KEY_OUT_CHANNELS not in self.ignores


PAGES: tuple[PageSpec, ...] = (
    PageSpec("pages/0_Home.py", "Home", ":material/home:", "home", "Explore"),
    PageSpec(
        "pages/1_Stage_activations.py",
        "Stage activations",
        ":material/layers:",
        "stage-activations",
        "Explore",
        (FPN_KEYS - {S.KEY_STAGES}) | {S.KEY_ALPHA},
    ),
    PageSpec(
        "pages/2_FPN_outputs.py", "FPN outputs", ":material/stacks:", "fpn-outputs", "Explore", frozenset({S.KEY_ALPHA})
    ),
    PageSpec("pages/3_Overlays.py", "Overlays", ":material/image:", "overlays", "Explore"),
    PageSpec("pages/4_Timing.py", "Timing", ":material/timer:", "timing", "Explore", MAP_STYLE_KEYS),
    PageSpec("pages/5_Step_by_step.py", "FPN step by step", ":material/stairs:", "step-by-step", "Teach"),
    PageSpec("pages/6_AB_comparison.py", "A/B comparison", ":material/compare:", "ab-comparison", "Teach"),
    PageSpec("pages/7_Scale_probe.py", "Scale probe", ":material/straighten:", "scale-probe", "Teach"),
    PageSpec("pages/8_Export.py", "Export", ":material/download:", "export", "Share"),
    PageSpec("pages/9_Detection.py", "Detection", ":material/center_focus_strong:", "detection", "Explore"),
    PageSpec("pages/10_Receptive_fields.py", "Receptive fields", ":material/visibility:", "receptive-fields", "Teach"),
    PageSpec("pages/11_Live.py", "Live camera", ":material/videocam:", "live", "Explore"),
)

_SPECS = {spec.url_path: spec for spec in PAGES}
#: A page not in :data:`PAGES` (the old addresses' redirects): it may read every control.
_UNKNOWN = PageSpec("", "", "", "", "")


def legacy_url_path(spec: PageSpec) -> str:
    """The page's address before the frame: streamlit's name for its file (``3_Overlays.py`` -> ``Overlays``)."""
    return Path(spec.file).stem.split("_", 1)[1]


def _query_params() -> dict[str, list[str]]:
    return {key: st.query_params.get_all(key) for key in st.query_params}


def _redirect(target: st.Page) -> Callable[[], None]:  # type: ignore[valid-type]
    """A hidden page that sends an old link on to ``target``, keeping the link's settings."""

    def go() -> None:
        st.switch_page(target, query_params=_query_params())

    return go


def _navigation() -> st.navigation:  # type: ignore[valid-type]
    """The navigation menu, plus hidden pages at the old addresses (``/Overlays``) that redirect."""
    sections: dict[str, list[st.Page]] = {}  # type: ignore[valid-type]
    for i, spec in enumerate(PAGES):
        page = st.Page(ROOT / spec.file, title=spec.title, icon=spec.icon, url_path=spec.url_path, default=i == 0)
        sections.setdefault(spec.section, []).append(page)
        if i:
            old = st.Page(_redirect(page), title=spec.title, url_path=legacy_url_path(spec), visibility="hidden")
            sections[spec.section].append(old)
    return st.navigation(sections)


def _opened_by_address() -> bool:
    """Whether this run opens a page the browser named by its address (not a page switch)."""
    ctx = get_script_run_ctx()
    manager = getattr(ctx, "pages_manager", None)
    return bool(manager and manager.intended_page_name and not manager.intended_page_script_hash)


def run(*, from_bare_page: bool = False) -> None:
    """Frame one run of the app: config, navigation, sidebar, link warnings, weights notice, page.

    Args:
        from_bare_page: streamlit ran a page file without the frame (see :func:`settings`).
    """
    st.set_page_config(page_title="FPN Explorer", page_icon="🔺", layout="wide")
    # The first run on a fresh server goes through streamlit's old ``pages/`` router (its
    # process-wide flag is still set). Where that router did not know the address (``/overlays``)
    # it ran this file after its "page not found", and the browser's session stays deaf to the
    # sidebar. Our navigation clears the flag; reloading the page starts a clean session.
    fell_back_to_main = PagesManager.uses_pages_directory and not from_bare_page and _opened_by_address()
    page = _navigation()
    if fell_back_to_main and page.url_path:
        components.html("<script>window.parent.location.reload();</script>", height=0)
        st.stop()
    spec = _SPECS.get(page.url_path, _UNKNOWN)
    with st.sidebar:
        settings_now, link_notices = sidebar.show_sidebar(spec.ignores)
    for notice in link_notices:
        st.warning(notice, icon=":material/link_off:")
    show_weights_notice(settings_now, fpn=spec.shows_fpn)
    _freeze_startup_objects("")
    page.run()
    _freeze_startup_objects(page.url_path)


_frozen = threading.Lock()
#: The pages whose first run in this process has been followed by a freeze.
_FROZEN: set[str] = set()


def _freeze_startup_objects(page: str) -> None:
    """Once per page and process, after its first run: exempt what exists now from the cyclic GC.

    Streamlit collects garbage after every run (``runner.postScriptGC``). With torch, torchvision,
    matplotlib and the model loaded that full collection scans about 440,000 objects and took
    180 ms of every rerun here, most of a slider's response. The first freeze (before the first
    page, after the first model) left the modules a page imports on its first run (matplotlib for
    the downloads, PIL's plugins, ...) outside: 65,000 objects, 30 to 60 ms of every rerun in
    Chromium. So each page's first run is followed by a freeze too (a dozen at most). Frozen
    objects are still freed by reference counting; only what each run creates later is scanned.
    """
    with _frozen:
        if page not in _FROZEN:
            gc.collect()
            gc.freeze()
            _FROZEN.add(page)


def settings() -> S.Settings:
    """The sidebar's settings for this run (read from its widgets; the frame drew them first).

    A fresh server's first request for an old address (``/Overlays``) makes streamlit run that
    page file alone, the way it ran ``pages/`` before ``st.navigation`` (its process-wide
    ``uses_pages_directory`` flag is still set). Such a bare run starts the frame instead.
    """
    if PagesManager.uses_pages_directory:
        run(from_bare_page=True)
        st.stop()
    return read_settings()


def read_settings() -> S.Settings:
    """The sidebar's settings as its widgets hold them (also from a widget callback)."""
    return S.settings_from_state(st.session_state, sidebar.table(), sidebar.image_from_state())


def header(title: str, intro: str | None = None) -> None:
    """A page's title and its one or two sentences of introduction."""
    st.title(title)
    if intro:
        st.markdown(intro)


# ------------------------------------------------------------------------------ weights


def _progress_bar() -> tuple[object, object]:
    bar = st.empty()

    def progress(done: int, total: int) -> None:
        if total:
            text = f"Downloading weights: {done / 2**20:.0f} of {total / 2**20:.0f} MB"
            bar.progress(min(done / total, 1.0), text=text)

    return bar, progress


def show_weights_notice(settings_now: S.Settings, *, fpn: bool = True) -> None:
    """What weights run, before the page: in full the first time, then as one line with an expander.

    Building the shared backbone happens here the first time (with a progress bar when a
    download runs); the page then finds it in the cache.

    Args:
        settings_now: the sidebar's settings.
        fpn: whether the page shows the pyramid; a page that shows the backbone alone hears
            about the backbone's weights only (and its notice does not change with the FPN's width).
    """
    config = settings_now.config
    bar, progress = _progress_bar()

    def build() -> Provenance:
        key = cache.ModelKey(config.weights, str(config.device))
        if cache.is_folder_weights(config.weights):  # the user's file: its own backbone and trained FPN
            return cache.get_file_pyramid(cache.FileKey(key)).provenance
        backbone = cache.get_backbone(key, progress)
        if not fpn:
            return backbone.provenance
        desc, trained = describe_fpn_weights(config, backbone)
        return dataclasses.replace(backbone.provenance, fpn=desc, fpn_pretrained=trained)

    try:
        provenance = loading.guarded(
            build, spinner="Loading ResNet-50 and the FPN (once per server)…", failure="The model could not be built"
        )
    finally:
        bar.empty()
    if provenance is None:
        return
    problems, advice = weights_problems(provenance, config.out_channels, config.weights, fpn=fpn)
    if not problems:
        st.caption(f"Weights: {provenance.backbone}" + (f"; FPN: {provenance.fpn}." if fpn else "."))
        return
    seen: set[tuple[str, str]] = st.session_state.setdefault(NOTICES_SEEN, set())
    text = "  \n".join(problems) + "  \n" + advice
    # Each kind of problem is told in full once per session (not again at every width step).
    kinds = {(config.weights, "backbone")} if not provenance.pretrained else set()
    if fpn and not provenance.fpn_pretrained:
        kinds.add((config.weights, "fpn"))
    if not kinds <= seen:
        seen.update(kinds)
        st.warning(text, icon=":material/warning:")
        _retry_row(provenance, nested=False)
        return
    short = (
        "The backbone has random weights"
        if not provenance.pretrained
        else f"The FPN is untrained at width {config.out_channels}"
    )
    with st.expander(f"⚠️ {short}: the maps show an untrained network. What to do…"):
        st.markdown(text)
        _retry_row(provenance, nested=True)


#: The weights files that carry a trained FPN (the COCO detection checkpoints).
FPN_FILES = {key: wf for key, wf in WEIGHT_FILES.items() if wf.fpn_stages}


def weights_problems(
    provenance: Provenance, out_channels: int, requested: str, *, fpn: bool = True
) -> tuple[list[str], str]:
    """What is untrained, and what to do about it (empty when all weights are trained).

    ``fpn=False``: the backbone's weights only (for a page that shows no pyramid).
    """
    problems = []
    if not provenance.pretrained:
        problems.append(
            f"**The backbone has random weights** ({provenance.backbone}): the maps show what an untrained "
            "ResNet-50 does, not learned features."
        )
    if fpn and not provenance.fpn_pretrained:
        if requested in FPN_FILES and provenance.fpn.startswith("random init ("):
            why = provenance.fpn.split(": ", 1)[-1] if ": " in provenance.fpn else "its checkpoint could not be loaded"
        else:
            trained = "; ".join(f"{wf.detector}: {wf.fpn_stages[0]}..{wf.fpn_stages[-1]}" for wf in FPN_FILES.values())
            widths = " or ".join(sorted({str(wf.fpn_out_channels) for wf in FPN_FILES.values()}))
            why = f"trained FPN weights exist only in the COCO detection checkpoints ({trained}), at width {widths}"
        problems.append(f"**The FPN is untrained at width {out_channels}**: {why}.")
    if not problems:
        return [], ""
    if not provenance.pretrained:
        advice = (
            f"**What to do:** {how_to_place(IMAGENET)} An operator can instead start the app with "
            f"`{WEIGHTS_ENV}=PATH streamlit run dashboard.py` or `streamlit run dashboard.py -- --weights PATH`. "
            "Then press **Try again**."
        )
    else:
        advice = (
            "**What to do:** choose the "
            + " or ".join(f"*{wf.label}*" for wf in FPN_FILES.values())
            + " weights, at the width and on the stages that checkpoint was trained on."
        )
    return problems, advice


def _retry_row(provenance: Provenance, *, nested: bool) -> None:
    """Try again, and why each trained option failed (an expander, or a list inside one)."""
    cols = st.columns([1, 6], vertical_alignment="center")
    if cols[0].button("Try again", key=S.KEY_RETRY, help="Look for the weight files again (clears the model caches)."):
        cache.clear_model_caches()
        st.session_state.pop(NOTICES_SEEN, None)
        st.rerun()
    if not provenance.fallbacks:
        return
    reasons = "\n".join(f"- {line}" for line in provenance.fallbacks)
    if nested:  # streamlit does not nest expanders
        cols[1].markdown("**Why the trained weights were not used:**\n" + reasons)
    else:
        with cols[1].expander("Why the trained weights were not used"):
            st.markdown(reasons)
