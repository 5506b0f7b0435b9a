"""Loading the analysis a page shows, with a spinner and messages, and its maps for the screen.

Pages call these; the computing is ``ui.cache``'s (cached) and the engine's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import streamlit as st

from fpn_core import PyramidConfig, WeightsError
from fpn_core.maps import MapRange, MapStyle
from ui import cache
from ui import settings as S

log = logging.getLogger(__name__)

T = TypeVar("T")
#: The range of maps already scaled to 0..1 (channel tiles).
UNIT_RANGE = MapRange(0.0, 1.0)


def load_analysis(
    settings: S.Settings, config: PyramidConfig | None = None, *, image: S.ImageChoice | None = None
) -> cache.Analysis | None:
    """The cached analysis for the current settings, with a spinner; errors become messages.

    Args:
        settings: the sidebar settings (image, size and device come from here).
        config: the pyramid to run; None uses the sidebar's.
        image: an image other than the sidebar's (e.g. the scales image).

    Returns:
        The analysis, or None (a message has been shown) when there is no image or it failed.
    """
    image = image or settings.image
    if image is None:
        st.info("Choose an image in the sidebar (a sample, the synthetic scales image, an upload or a photo).")
        return None
    config = settings.config if config is None else config
    return _shown(lambda: cache.get_analysis(config, image.array, image.digest, settings.size))


def load_backbone_pass(settings: S.Settings) -> cache.BackbonePass | None:
    """The cached backbone pass alone (for pages that show no FPN level), like :func:`load_analysis`."""
    image = settings.image
    if image is None:
        st.info("Choose an image in the sidebar (a sample, the synthetic scales image, an upload or a photo).")
        return None
    return _shown(lambda: cache.get_backbone_pass(settings.config, image.array, image.digest, settings.size))


def _shown(run: Callable[[], T]) -> T | None:
    """``run()`` with a spinner; a failure becomes one message, notices become warnings."""
    try:
        with st.spinner("Running the network (cached after the first time)…"):
            result = run()
    except (WeightsError, ValueError) as exc:
        st.error(f"The analysis could not run: {exc}")
        return None
    except Exception:  # any other failure: a message for the user, the traceback for the log
        log.exception("analysis failed")
        st.error("The analysis failed unexpectedly (details are in the server log). Try a smaller input size.")
        return None
    for notice in result.notices:  # type: ignore[attr-defined]
        st.warning(notice)
    return result


# ------------------------------------------------------------------------- screen maps


def stage_maps(
    analysis: cache.Analysis | cache.BackbonePass, style: MapStyle
) -> tuple[dict[str, np.ndarray], dict[str, MapRange]]:
    """The backbone stages' reduced maps and color ranges (cached per backbone pass and style)."""
    key = analysis.backbone_key
    maps = cache.aggregated_maps(key, "stages", style.aggregation, analysis.backbone.stages)
    return maps, cache.color_ranges(key, "stages", style.aggregation, style.scope, maps)


def level_maps(analysis: cache.Analysis, style: MapStyle) -> tuple[dict[str, np.ndarray], dict[str, MapRange]]:
    """The pyramid levels' reduced maps and color ranges (cached per analysis and style)."""
    maps = cache.aggregated_maps(analysis.key, "levels", style.aggregation, analysis.fpn.levels)
    return maps, cache.color_ranges(analysis.key, "levels", style.aggregation, style.scope, maps)


#: A level's recorded steps as the FPN outputs page titles them (the merged map is the step page's).
STEP_TITLES: dict[str, str] = {"lateral": "lateral 1×1", "top_down": "top-down (upsampled)", "output": "output"}


def step_maps(analysis: cache.Analysis, level: str, aggregation: str) -> dict[str, np.ndarray]:
    """One level's recorded steps (``lateral``, ``top_down``, ``merged``, ``output``) as reduced maps."""
    step = analysis.fpn.steps[level]
    tensors = {
        name: t for name in ("lateral", "top_down", "merged", "output") if (t := getattr(step, name)) is not None
    }
    return cache.aggregated_maps(analysis.key, f"{level}.steps", aggregation, tensors)
