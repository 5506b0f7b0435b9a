"""Text for pages: captions of feature maps, the weights line, lists of names."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch

from fpn_core import FeatureInfo, stride_of
from fpn_core.maps import map_stats
from ui import cache


def weights_line(analysis: cache.Analysis | cache.BackbonePass) -> str:
    """``"backbone random (random init), FPN random"``: what a screenshot must say about weights."""
    provenance = analysis.model.provenance
    if isinstance(analysis, cache.BackbonePass):
        return f"backbone {'pretrained' if provenance.pretrained else 'random'} ({provenance.source})"
    return provenance.summary()


#: Statistics per feature tensor, by identity: cached tensors are shared and never written, so a
#: rerun that shows the same tensor again looks its numbers up (entries go with the tensor).
_STATS: dict[int, tuple[weakref.ref, dict[str, float]]] = {}


def _stats(tensor: torch.Tensor) -> dict[str, float]:
    entry = _STATS.get(id(tensor))
    if entry is not None and entry[0]() is tensor:
        return entry[1]
    stats = map_stats(tensor)
    key = id(tensor)
    _STATS[key] = (weakref.ref(tensor, lambda _: _STATS.pop(key, None)), stats)
    return stats


def feature_caption(name: str, tensor: torch.Tensor, *, what: str = "") -> str:
    """A one-paragraph caption: name, shape, stride, channels and statistics.

    Args:
        name: ``c1..c5`` or ``p2..p6``.
        tensor: the (1, C, H, W) feature map.
        what: an optional description, e.g. ``"backbone stage (layer2)"``.
    """
    stats = _stats(tensor)
    c, h, w = (int(s) for s in tensor.shape[-3:])
    head = f"**{name}**" + (f" — {what}" if what else "")
    return (
        f"{head} · shape {c} × {h} × {w} (C × H × W) · stride {stride_of(name)} · {c} channels  \n"
        f"mean {stats['mean']:.3g}, std {stats['std']:.3g}, min {stats['min']:.3g}, "
        f"max {stats['max']:.3g}, exact zeros {stats['sparsity']:.0%}"
    )


def stage_description(name: str, info: FeatureInfo) -> str:
    """E.g. ``"backbone stage (layer2)"`` for ``c3``."""
    return f"backbone stage ({info[name].module})"


def join_names(names: Sequence[str]) -> str:
    """``"c3, c4 and c5"``."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
