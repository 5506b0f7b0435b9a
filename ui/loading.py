"""Loading the analysis a page shows, with a spinner and messages, and its maps for the screen.

Pages call these; the computing is ``ui.cache``'s (cached) and the engine's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TypeVar

import numpy as np
import streamlit as st
import torch

from fpn_core import PyramidConfig, WeightsError
from fpn_core.maps import MapRange, MapStyle
from ui import cache
from ui import settings as S

log = logging.getLogger(__name__)

T = TypeVar("T")
#: The range of maps already scaled to 0..1 (channel tiles).
UNIT_RANGE = MapRange(0.0, 1.0)
#: The two groups of features a page reduces to maps: the backbone's stages and the pyramid's levels.
GROUP_STAGES, GROUP_LEVELS = "stages", "levels"


#: What every page says when no image is chosen yet.
CHOOSE_IMAGE = "Choose an image in the sidebar (a sample, the synthetic scales image, an upload or a photo)."


def choose_image_prompt(then: str = "") -> None:
    """The one "choose an image" prompt; ``then`` adds what the page does once one is chosen."""
    st.info(CHOOSE_IMAGE + (f" {then}" if then else ""), icon=":material/image:")


def guarded(run: Callable[[], T], *, spinner: str, failure: str, advice: str = "") -> T | None:
    """``run()`` with a spinner; a failure becomes one message on the page.

    A known error (``WeightsError``, ``ValueError``: a missing file, a refused option) is shown
    as ``"{failure}: {why}"``; any other is logged with its traceback and shown as ``failure``
    with ``advice``.

    Returns:
        What ``run`` returned, or None after a failure.
    """
    try:
        with st.spinner(spinner):
            return run()
    except (WeightsError, ValueError) as exc:
        st.error(f"{failure}: {exc}")
    except Exception:  # any other failure: a message for the user, the traceback for the log
        log.exception(failure)
        st.error(f"{failure} unexpectedly (details are in the server log). {advice}".strip())
    return None


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
        choose_image_prompt()
        return None
    config = settings.config if config is None else config
    return _shown(lambda: cache.get_analysis(config, image.array, image.digest, settings.size))


def load_backbone_pass(settings: S.Settings) -> cache.BackbonePass | None:
    """The cached backbone pass alone (for pages that show no FPN level), like :func:`load_analysis`."""
    image = settings.image
    if image is None:
        choose_image_prompt()
        return None
    return _shown(lambda: cache.get_backbone_pass(settings.config, image.array, image.digest, settings.size))


R = TypeVar("R", cache.Analysis, cache.BackbonePass)


def _shown(run: Callable[[], R]) -> R | None:
    """``run()`` guarded (:func:`guarded`); the result's notices become warnings."""
    result = guarded(
        run,
        spinner="Running the network (cached after the first time)…",
        failure="The analysis could not run",
        advice="Try a smaller input size.",
    )
    for notice in result.notices if result is not None else ():
        st.warning(notice)
    return result


# ------------------------------------------------------------------------- screen maps


def _maps(
    source: cache.AnalysisKey | cache.BackboneKey, group: str, features: Mapping[str, torch.Tensor], style: MapStyle
) -> tuple[dict[str, np.ndarray], dict[str, MapRange]]:
    key = cache.MapsKey(source, group, style.aggregation)
    maps = cache.aggregated_maps(key, features)
    return maps, cache.color_ranges(cache.RangesKey(key, style.scope), maps)


def stage_maps(
    analysis: cache.Analysis | cache.BackbonePass, style: MapStyle
) -> tuple[dict[str, np.ndarray], dict[str, MapRange]]:
    """The backbone stages' reduced maps and color ranges (cached per backbone pass and style)."""
    return _maps(analysis.backbone_key, GROUP_STAGES, analysis.output.stages, style)


def level_maps(analysis: cache.Analysis, style: MapStyle) -> tuple[dict[str, np.ndarray], dict[str, MapRange]]:
    """The pyramid levels' reduced maps and color ranges (cached per analysis and style)."""
    return _maps(analysis.key, GROUP_LEVELS, analysis.output.levels, style)


def overlay_images(
    analysis: cache.Analysis, group: str, style: MapStyle
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, MapRange]]:
    """The stages' (``GROUP_STAGES``) or levels' maps over the network's input.

    Returns:
        name -> overlay (RGB uint8), name -> reduced map, name -> color range (all cached, read-only).
    """
    if group == GROUP_STAGES:
        source, features = analysis.backbone_key, analysis.output.stages
    else:
        source, features = analysis.key, analysis.output.levels
    maps, ranges = _maps(source, group, features, style)
    key = cache.OverlaysKey(cache.MapsKey(source, group, style.aggregation), style)
    return cache.overlay_images(key, analysis.output.image, maps, ranges), maps, ranges


def step_maps(analysis: cache.Analysis, level: str, aggregation: str) -> dict[str, np.ndarray]:
    """One level's recorded steps (``lateral``, ``top_down``, ``merged``, ``output``) as reduced maps."""
    step = analysis.output.steps[level]
    tensors = {
        name: t for name in ("lateral", "top_down", "merged", "output") if (t := getattr(step, name)) is not None
    }
    return cache.aggregated_maps(cache.MapsKey(analysis.key, f"{level}.steps", aggregation), tensors)
