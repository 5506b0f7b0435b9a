"""What a detection run returns: the cached features, the detections, and per-level anchors and proposals."""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor
from torchvision.models.detection.roi_heads import paste_masks_in_image

from ..levels import torchvision_key_to_level
from ..weights import Provenance
from .specs import DetectorSpec, paper_level

__all__ = ["Detections", "DetectorFeatures", "LevelAnchors", "LevelProposals"]


@dataclass(frozen=True)
class LevelAnchors:
    """The anchors one pyramid level carries.

    Attributes:
        sizes: anchor side lengths at aspect ratio 1, in network input pixels.
        aspect_ratios: height / width ratios, each combined with each size.
        stride: (vertical, horizontal) spacing of anchor centres in network input pixels, as
            torchvision computes it (padded input size // map size).
        per_position: anchors at each map position (``len(sizes) * len(aspect_ratios)``).
        count: anchors on this level for this input (positions × per_position).
    """

    sizes: tuple[float, ...]
    aspect_ratios: tuple[float, ...]
    stride: tuple[int, int]
    per_position: int
    count: int


@dataclass(frozen=True)
class LevelProposals:
    """The RPN's proposals from one level that survived its NMS (Faster R-CNN only).

    Attributes:
        count: how many of the (at most 1000) proposals sent to the RoI heads came from this level.
        boxes: the top ``k`` of them by objectness, ``(k, 4)`` x1, y1, x2, y2 in input image pixels.
        scores: their objectness after a sigmoid, ``(k,)``.
    """

    count: int
    boxes: Tensor
    scores: Tensor


@dataclass(frozen=True)
class DetectorFeatures:
    """Backbone + FPN output on one image: what :func:`run_heads` needs, computed once.

    Attributes:
        spec: the detector's spec (the heads check it matches; ``detector`` is its name).
        maps: the pyramid with torchvision's keys (``'0'..'3', 'pool'`` or ``'0'..'2', 'p6', 'p7'``).
        image_hw: the input image's size.
        input_hw: the resized network input's size, before padding to a multiple of 32.
        padded_hw: the batched tensor's size (what anchors are laid out on).
    """

    spec: DetectorSpec
    maps: OrderedDict[str, Tensor]
    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    padded_hw: tuple[int, int]

    @property
    def detector(self) -> str:
        return self.spec.name

    @property
    def levels(self) -> OrderedDict[str, Tensor]:
        """The same maps named by level (``p2..p6`` or ``p3..p7``)."""
        return OrderedDict((torchvision_key_to_level(k, self.spec.stages), v) for k, v in self.maps.items())


@dataclass(frozen=True)
class Detections:
    """What a detector found on one image, each box traced to its pyramid level.

    Attributes:
        spec: the detector's spec (``detector`` is its name, the JSON's ``"detector"``).
        boxes: ``(N, 4)`` float x1, y1, x2, y2 in the input image's pixels, best score first.
        scores: ``(N,)``.
        labels: ``(N,)`` COCO category ids, as torchvision returns them.
        names: N class names (the weights' ``meta["categories"]``).
        levels: N level names: for Faster R-CNN the level RoIAlign pooled the detection's
            proposal from (torchvision's ``LevelMapper`` on the proposal, in network input
            coordinates); for RetinaNet the level of the anchor that produced it.
        anchor_levels: N level names of the anchor behind each detection: for Faster R-CNN the
            level whose RPN anchor proposed the box (it may differ from ``levels``); for
            RetinaNet the same as ``levels``.
        source_boxes: ``(N, 4)`` the proposal (Faster R-CNN) or anchor (RetinaNet) that produced
            each detection, in network input pixels.
        objectness: ``{level: (H_k, W_k)}``: for Faster R-CNN the RPN objectness after a sigmoid,
            the maximum over the 3 anchors at each position; for RetinaNet the highest class
            probability over the anchors at each position.
        proposals: ``{level: LevelProposals}`` (Faster R-CNN; empty for RetinaNet, which has no RPN).
        anchors: ``{level: LevelAnchors}``: sizes and aspect ratios per level.
        score_threshold: boxes scoring below it were dropped.
        image_hw: the input image's size; input_hw: the network input's size (before padding).
        provenance: the detector's weights.
        mask_probs: Mask R-CNN: ``(N, 28, 28)`` mask probabilities of each detection's class, in its
            box (what torchvision pastes into the image); else None. ``masks`` pastes them.
        keypoints: Keypoint R-CNN: ``(N, K, 3)`` x, y, visibility in the input image's pixels; else None.
        keypoint_scores: Keypoint R-CNN: ``(N, K)`` the heat map's score of each keypoint; else None.
    """

    spec: DetectorSpec
    boxes: Tensor
    scores: Tensor
    labels: Tensor
    names: tuple[str, ...]
    levels: tuple[str, ...]
    anchor_levels: tuple[str, ...]
    source_boxes: Tensor
    objectness: dict[str, Tensor]
    proposals: dict[str, LevelProposals]
    anchors: dict[str, LevelAnchors]
    score_threshold: float
    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    provenance: Provenance | None = field(default=None, compare=False)
    mask_probs: Tensor | None = None
    keypoints: Tensor | None = None
    keypoint_scores: Tensor | None = None

    @functools.cached_property
    def masks(self) -> Tensor | None:
        """Mask R-CNN: ``(N, H, W)`` float in [0, 1] in the input image's pixels (torchvision's
        ``paste_masks_in_image`` of each mask into its box), pasted once on first use; else None."""
        if self.mask_probs is None:
            return None
        h, w = self.image_hw
        return paste_masks_in_image(self.mask_probs[:, None], self.boxes, (h, w))[:, 0]

    def mask_summary(self, threshold: float = 0.5) -> list[dict]:
        """Per detection, its mask's area (pixels at or above ``threshold``) and the box around them
        (``[x1, y1, x2, y2]``, None for an empty mask); empty without masks."""
        masks = self.masks
        if masks is None:
            return []
        rows = []
        for m in masks >= threshold:
            ys, xs = m.nonzero(as_tuple=True)
            box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if xs.numel() else None
            rows.append({"area": int(xs.numel()), "box": box})
        return rows

    def __len__(self) -> int:
        return int(self.scores.numel())

    @property
    def detector(self) -> str:
        return self.spec.name

    @property
    def level_names(self) -> tuple[str, ...]:
        """The detector's levels, fine to coarse (every key of ``objectness``)."""
        return tuple(self.objectness)

    def objectness_maps(self) -> dict[str, np.ndarray]:
        """Each level's objectness map cropped to the network input (the rest is padding to a multiple of 32)."""
        ih, iw = self.input_hw
        out = {}
        for level, tensor in self.objectness.items():
            sh, sw = self.anchors[level].stride
            out[level] = tensor.numpy()[: max(1, -(-ih // sh)), : max(1, -(-iw // sw))]
        return out

    def count_per_level(self) -> dict[str, int]:
        """How many detections each level produced (every level of the detector, zeros included)."""
        counts = dict.fromkeys(self.level_names, 0)
        for level in self.levels:
            counts[level] = counts.get(level, 0) + 1
        return counts

    @property
    def input_scale(self) -> float:
        """Network input pixels per image pixel (the transform keeps the aspect ratio)."""
        return self.input_hw[0] / self.image_hw[0]

    def sizes(self) -> list[float]:
        """Box size sqrt(w*h) of each detection, in input image pixels."""
        wh = (self.boxes[:, 2:] - self.boxes[:, :2]).clamp_min(0)
        return [float(v) for v in (wh[:, 0] * wh[:, 1]).sqrt()]

    def as_dict(self) -> dict:
        """Plain JSON-ready data: one row per detection, counts and anchors per level, provenance.

        Each row has ``size`` (√(wh) in image pixels), ``input_size`` (the same in network input
        pixels, where the FPN rule is defined) and ``paper_k`` (the rule on ``input_size``).
        """
        rows = []
        scale = self.input_scale
        masks = self.mask_summary()
        for i, size in enumerate(self.sizes()):
            x1, y1, x2, y2 = (float(v) for v in self.boxes[i])
            rows.append(
                {
                    "class": self.names[i],
                    "label": int(self.labels[i]),
                    "score": float(self.scores[i]),
                    "box": [x1, y1, x2, y2],
                    "size": size,
                    "input_size": size * scale,
                    "level": self.levels[i],
                    "anchor_level": self.anchor_levels[i],
                    "paper_k": paper_level((x2 - x1) * scale, (y2 - y1) * scale),
                }
            )
            if masks:
                rows[-1]["mask"] = masks[i]
            if self.keypoints is not None:
                rows[-1]["keypoints"] = [[float(v) for v in kp] for kp in self.keypoints[i]]
        return {
            "detector": self.detector,
            "score_threshold": self.score_threshold,
            "image_hw": list(self.image_hw),
            "input_hw": list(self.input_hw),
            "detections": rows,
            "per_level": self.count_per_level(),
            "proposals_per_level": {k: p.count for k, p in self.proposals.items()},
            "anchors": {
                k: {
                    "sizes": list(a.sizes),
                    "aspect_ratios": list(a.aspect_ratios),
                    "stride": list(a.stride),
                    "per_position": a.per_position,
                }
                for k, a in self.anchors.items()
            },
            "weights": self.provenance.as_dict() if self.provenance else None,
        }
