"""Shareable state: every sidebar setting lives in the URL's query parameters.

How it works:

1. On a session's first run, :func:`seed_from_url` reads ``st.query_params`` once, checks
   every value (:func:`parse_params`) and writes the accepted ones into the sidebar's kept
   values (``_kept_<key>``, see ``ui.sidebar``), so the widgets open with them. A value that
   does not fit (``?fpn_width=999``, ``?fpn_stages=c2,c5``, ``?map_colormap=nope``) is dropped:
   the widget keeps its default and the page shows a warning that names the parameter.
2. At the end of every sidebar run, :func:`write_to_url` writes the current values back
   (only those that changed), so the address bar always holds the whole view.

The query parameter names are the widget keys (``fpn_width``, ``map_colormap`` ...).

Why not streamlit's ``bind="query-params"``: it drops an invalid URL value silently (the user
is never told why the link did not open as sent), a bound parameter cannot be changed through
``st.query_params``, and the sidebar already keeps its values in plain session-state keys for
cross-page persistence; one small reader and writer keeps a single source of truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlencode

import streamlit as st

from fpn_core import FPN_STAGES, MERGE_MODES, UPSAMPLE_MODES, WEIGHT_CHOICES
from fpn_core.levels import validate_stages
from fpn_core.maps import COLORMAPS, REDUCTIONS, SCOPES
from ui import state as S

#: Plain session-state key: the URL has been read for this session.
URL_READ = "_url_read"
#: Plain session-state key: warnings about refused URL values, shown once by the page.
URL_NOTICES = "_url_notices"
#: Prefix of the sidebar's kept values (must match ``ui.sidebar.KEPT``).
KEPT = "_kept_"

#: Sidebar keys that travel in the URL (an upload cannot).
URL_KEYS: tuple[str, ...] = tuple(k for k in S.SIDEBAR_KEYS if k != S.KEY_UPLOAD)
#: Short URL words for the image source.
SOURCE_SLUGS: dict[str, str] = {"sample": S.SOURCE_SAMPLE, "scales": S.SOURCE_SCALES, "upload": S.SOURCE_UPLOAD}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

#: Each sidebar key's default, as the sidebar's widgets use it (the sample and device
#: defaults depend on what is installed and are filled in by :func:`defaults`).
BASE_DEFAULTS: dict[str, object] = {
    S.KEY_SOURCE: S.SOURCE_SAMPLE,
    S.KEY_WIDTH: S.DEFAULT_WIDTH,
    S.KEY_STAGES: list(S.DEFAULT_STAGES_CHOICE),
    S.KEY_UPSAMPLE: UPSAMPLE_MODES[0],
    S.KEY_MERGE: MERGE_MODES[0],
    S.KEY_P6: True,
    S.KEY_SIZE: S.DEFAULT_SIZE,
    S.KEY_WEIGHTS: S.DEFAULT_WEIGHTS,
    S.KEY_REDUCTION: S.DEFAULT_REDUCTION,
    S.KEY_COLORMAP: S.DEFAULT_COLORMAP,
    S.KEY_ALPHA: S.DEFAULT_ALPHA,
    S.KEY_SCOPE: S.DEFAULT_SCOPE,
    S.KEY_EXPORT_SCALE: S.DEFAULT_EXPORT_SCALE,
}


def defaults(samples: Sequence[str], devices: Sequence[str]) -> dict[str, object]:
    """Every URL key's default, with the first sample and the best device present."""
    return {
        **BASE_DEFAULTS,
        S.KEY_SAMPLE: samples[0] if samples else None,
        S.KEY_DEVICE: devices[0] if devices else "cpu",
    }


# ------------------------------------------------------------------------------ parsing


def _choice(options: Sequence[object]) -> Callable[[str], object]:
    def parse(raw: str) -> object:
        for option in options:
            if raw == str(option):
                return option
        raise ValueError(f"expected one of {', '.join(str(o) for o in options)}")

    return parse


def _int_range(lo: int, hi: int, step: int) -> Callable[[str], object]:
    def parse(raw: str) -> object:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"expected a whole number from {lo} to {hi}") from None
        if not lo <= value <= hi or (value - lo) % step:
            raise ValueError(f"expected a multiple of {step} from {lo} to {hi}")
        return value

    return parse


def _alpha(raw: str) -> object:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected a number from 0 to 1") from None
    steps = value / 0.05
    if not (math.isfinite(value) and 0.0 <= value <= 1.0 and abs(steps - round(steps)) < 1e-6):
        raise ValueError("expected a number from 0 to 1 in steps of 0.05")
    return round(round(steps) * 0.05, 2)


def _bool(raw: str) -> object:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError("expected true or false")


def _stages(raw: str) -> object:
    picked = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in picked if s not in FPN_STAGES]
    if unknown:
        raise ValueError(f"expected stages from {', '.join(FPN_STAGES)}, got {', '.join(unknown)}")
    ordered = tuple(s for s in FPN_STAGES if s in picked)
    try:
        validate_stages(ordered)
    except ValueError:
        raise ValueError("expected a contiguous run of two or more stages, e.g. c3,c4,c5") from None
    return list(ordered)


def _source(raw: str) -> object:
    if raw in SOURCE_SLUGS:
        return SOURCE_SLUGS[raw]
    if raw in S.SOURCES:
        return raw
    raise ValueError(f"expected one of {', '.join(SOURCE_SLUGS)}")


def _scale(raw: str) -> object:
    return _choice(S.EXPORT_SCALES)(raw.lower().removesuffix("x"))


def parsers(samples: Sequence[str], devices: Sequence[str]) -> dict[str, Callable[[str], object]]:
    """One parser per URL key: text -> widget value, or ``ValueError`` saying what was expected."""
    return {
        S.KEY_SOURCE: _source,
        S.KEY_SAMPLE: _choice(samples),
        S.KEY_WIDTH: _int_range(S.WIDTH_MIN, S.WIDTH_MAX, S.WIDTH_STEP),
        S.KEY_STAGES: _stages,
        S.KEY_UPSAMPLE: _choice(UPSAMPLE_MODES),
        S.KEY_MERGE: _choice(MERGE_MODES),
        S.KEY_P6: _bool,
        S.KEY_SIZE: _int_range(S.SIZE_MIN, S.SIZE_MAX, S.SIZE_STEP),
        S.KEY_DEVICE: _choice(devices),
        S.KEY_WEIGHTS: _choice(WEIGHT_CHOICES),
        S.KEY_REDUCTION: _choice(REDUCTIONS),
        S.KEY_COLORMAP: _choice(COLORMAPS),
        S.KEY_ALPHA: _alpha,
        S.KEY_SCOPE: _choice(SCOPES),
        S.KEY_EXPORT_SCALE: _scale,
    }


def _shown(value: object) -> str:
    """A default as a user would type it in the URL."""
    return serialize(value) if value is not None else "none"


def parse_params(
    params: Mapping[str, str | list[str]], samples: Sequence[str], devices: Sequence[str]
) -> tuple[dict[str, object], list[str]]:
    """Check query parameters against what the sidebar offers.

    Args:
        params: name -> value (a list when the name is repeated; the last one counts, as in
            ``st.query_params``). Names that are not sidebar keys are ignored.
        samples: the sample names offered.
        devices: the devices offered.

    Returns:
        The accepted values by widget key, and one message per refused value that names the
        parameter, what was expected and the default used instead.
    """
    checks = parsers(samples, devices)
    fallback = defaults(samples, devices)
    accepted: dict[str, object] = {}
    notices: list[str] = []
    for key in URL_KEYS:
        if key not in params:
            continue
        raw_value = params[key]
        raw = str(raw_value[-1] if isinstance(raw_value, list) and raw_value else raw_value).strip()
        try:
            accepted[key] = checks[key](raw)
        except ValueError as exc:
            notices.append(
                f"`{key}={raw}` in the link is not valid ({exc}); using the default {_shown(fallback[key])}."
            )
    return accepted, notices


def serialize(value: object) -> str:
    """A widget value as URL text: lists comma-joined, booleans ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    for slug, label in SOURCE_SLUGS.items():
        if value == label:
            return slug
    return str(value)


def current_params() -> dict[str, str]:
    """The sidebar's current values as query parameters (the keys it has drawn so far)."""
    out = {}
    for key in URL_KEYS:
        value = st.session_state.get(KEPT + key)
        if value is not None:
            out[key] = serialize(value)
    return out


# -------------------------------------------------------------------------- streamlit


def seed_from_url(samples: Sequence[str], devices: Sequence[str]) -> None:
    """Once per session: put the URL's valid values into the sidebar's kept values.

    Refused values are remembered in ``URL_NOTICES`` for :func:`show_notices`.
    """
    if st.session_state.get(URL_READ):
        return
    st.session_state[URL_READ] = True
    params = {key: st.query_params.get_all(key) for key in st.query_params}
    accepted, notices = parse_params(params, samples, devices)
    for key, value in accepted.items():
        st.session_state[KEPT + key] = value
        st.session_state.pop(key, None)  # the kept value wins over any earlier widget state
    if S.KEY_STAGES in accepted:
        st.session_state[S.LAST_STAGES] = tuple(accepted[S.KEY_STAGES])  # type: ignore[arg-type]
    if notices:
        st.session_state[URL_NOTICES] = notices


def write_to_url() -> dict[str, str]:
    """Write the sidebar's current values into the URL (only those that changed).

    Returns:
        The query parameters of this view.
    """
    wanted = current_params()
    for key, value in wanted.items():
        if st.query_params.get(key) != value:
            st.query_params[key] = value
    return wanted


def share_link(params: Mapping[str, str]) -> str:
    """The page's address with ``params``; a relative ``?…`` when the address is unknown (tests)."""
    try:
        base = st.context.url or ""
    except Exception:  # no browser context (e.g. a bare script run): the query alone still helps
        base = ""
    return f"{base}?{urlencode(dict(params))}"


def show_notices() -> None:
    """Show the warnings about refused URL values once, in the main area."""
    for notice in st.session_state.pop(URL_NOTICES, []):
        st.warning(notice, icon=":material/link_off:")
