"""Running a detector on an image, every detection traced to the level that found it.

Why the steps are run here one by one instead of calling ``model(images)``: torchvision's
forward returns boxes, scores and labels, and drops which proposal or anchor (hence which
level) produced each box. Hooks could catch that, but the model is shared read-only by every
session of the dashboard; so :func:`run_heads` calls torchvision's own components (transform,
backbone, RPN head, box coder, RoIAlign, box head, RetinaNet head) in torchvision's order, and
only re-does the few lines of bookkeeping (proposal filtering, post-processing) that keep the
index of each box's source. Nothing is written to the model during a run, not even
torchvision's lazy caches (``AnchorGenerator.cell_anchors``, ``MultiScaleRoIAlign.scales``).

Caching: :func:`run_detector_features` (backbone + FPN, the expensive part) runs once per image,
size and weights; :func:`run_heads` runs the heads on those features; :func:`filter_detections`
re-applies a score threshold without running anything. :func:`detect` does all three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.roi_heads import keypointrcnn_inference, maskrcnn_inference
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes, resize_keypoints
from torchvision.ops import boxes as box_ops
from torchvision.ops.poolers import _multiscale_roi_align, _setup_scales

from .. import packed
from ..device import device_slot
from ..images import check_rgb
from ..levels import level_name, stage_index
from .build import Detector
from .results import Detections, DetectorFeatures, LevelAnchors, LevelProposals
from .specs import FCOS_FAMILY, RCNN, RETINANET, DetectorSpec, HeadFamily

__all__ = [
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MIN_SIZE",
    "MAX_INPUT_SIZE",
    "MIN_INPUT_SIZE",
    "TOP_K_PROPOSALS",
    "detect",
    "filter_detections",
    "run_detector_features",
    "run_heads",
]

#: Proposals kept per level for display (the RPN itself keeps up to 1000 over all levels).
TOP_K_PROPOSALS = 10
#: torchvision's detection input size: shorter side 800, longer side at most 1333.
DEFAULT_MIN_SIZE, DEFAULT_MAX_SIZE = 800, 1333
#: Limits of a chosen input size (the long side), in pixels.
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 64, 1333


def _image_tensor(image: np.ndarray) -> Tensor:
    """An RGB uint8 (H, W, 3) array as torchvision's detectors take it: float (3, H, W) in [0, 1]."""
    check_rgb(image)
    if not image.flags.writeable:  # shared, read-only arrays (the UI's caches): torch wants a writable buffer
        image = image.copy()
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255)


def run_detector_features(det: Detector, image: np.ndarray, *, size: int | None = None) -> DetectorFeatures:
    """Resize, normalize and run the backbone and FPN: the part worth caching.

    Args:
        det: from :func:`build_detector`.
        image: RGB uint8 (H, W, 3).
        size: None for torchvision's detection size (shorter side 800, longer at most 1333,
            what the COCO weights were trained at); else the long side in pixels (64 to 1333).

    Raises:
        ValueError: a bad image or size.
    """
    spec = det.spec
    if size is not None and not MIN_INPUT_SIZE <= int(size) <= MAX_INPUT_SIZE:
        raise ValueError(f"size must be from {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE} pixels, got {size}")
    tensor = _image_tensor(image)
    device = det.device
    transform = det.model.transform
    if size is not None:  # min = max = size: the long side becomes ``size``
        transform = GeneralizedRCNNTransform(int(size), int(size), list(spec.weights.mean), list(spec.weights.std))
    with device_slot(device), torch.inference_mode():
        images, _ = transform([tensor.to(device)])
        x = images.tensors
        if det.folded:
            x = x.contiguous(memory_format=torch.channels_last)
        maps = det.model.backbone(x)
    h, w = images.image_sizes[0]
    return DetectorFeatures(
        spec, maps, (int(image.shape[0]), int(image.shape[1])), (int(h), int(w)), tuple(x.shape[-2:])
    )


def _anchors(gen: AnchorGenerator, padded_hw: tuple[int, int], maps: Sequence[Tensor]) -> tuple[list[Tensor], list]:
    """torchvision's ``AnchorGenerator.forward`` for one image, without writing its cache.

    Returns:
        The anchors per level ``(H*W*A, 4)`` in network input pixels, and the strides used.
    """
    dtype, device = maps[0].dtype, maps[0].device
    out, strides = [], []
    for fmap, base in zip(maps, gen.cell_anchors, strict=True):
        gh, gw = fmap.shape[-2:]
        sh = torch.empty((), dtype=torch.int64, device=device).fill_(padded_hw[0] // gh)
        sw = torch.empty((), dtype=torch.int64, device=device).fill_(padded_hw[1] // gw)
        shifts_x = torch.arange(0, gw, dtype=torch.int32, device=device) * sw
        shifts_y = torch.arange(0, gh, dtype=torch.int32, device=device) * sh
        shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
        shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
        shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
        base = base.to(dtype=dtype, device=device)
        out.append((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4))
        strides.append((int(sh), int(sw)))
    return out, strides


def _anchor_info(gen: AnchorGenerator, names: Sequence[str], strides, counts: Sequence[int]) -> dict[str, LevelAnchors]:
    return {
        name: LevelAnchors(
            tuple(float(s) for s in sizes),
            tuple(float(r) for r in ratios),
            stride,
            len(sizes) * len(ratios),
            int(count),
        )
        for name, sizes, ratios, stride, count in zip(names, gen.sizes, gen.aspect_ratios, strides, counts, strict=True)
    }


@dataclass
class _Raw:
    """Detections in network input coordinates, before the final rescale."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    levels: list[str]
    anchor_levels: list[str]
    sources: Tensor
    objectness: dict[str, Tensor]
    proposals: dict[str, tuple[int, Tensor, Tensor]]
    anchors: dict[str, LevelAnchors]
    mask_probs: Tensor | None = None
    keypoints: Tensor | None = None
    keypoint_scores: Tensor | None = None


def _pool(pooler, maps: dict[str, Tensor], boxes: Tensor, image_shape: tuple[int, int]) -> tuple[Tensor, Callable]:
    """torchvision's ``MultiScaleRoIAlign`` on one image, without writing its lazy scale cache.

    Returns:
        The pooled features, and the ``LevelMapper`` that chose each box's level.
    """
    xs = [maps[k] for k in pooler.featmap_names]
    scales, mapper = _setup_scales(xs, [image_shape], pooler.canonical_scale, pooler.canonical_level)
    return _multiscale_roi_align(xs, [boxes], pooler.output_size, pooler.sampling_ratio, scales, mapper), mapper


def _mask_and_keypoints(rh, maps: dict[str, Tensor], boxes: Tensor, labels: Tensor, image_shape: tuple[int, int]):
    """torchvision's ``RoIHeads.forward`` after the boxes (eval): the mask head on each final box (Mask
    R-CNN: ``(N, 1, 28, 28)`` probabilities of its label), the keypoint head (Keypoint R-CNN:
    ``(N, K, 3)`` x, y, visibility in network input pixels, and their scores). None where the model has none.
    """
    masks = keypoints = scores = None
    if rh.has_mask():
        feats, _ = _pool(rh.mask_roi_pool, maps, boxes, image_shape)
        masks = maskrcnn_inference(rh.mask_predictor(rh.mask_head(feats)), [labels])[0]
    if rh.has_keypoint():
        feats, _ = _pool(rh.keypoint_roi_pool, maps, boxes, image_shape)
        kps, kp_scores = keypointrcnn_inference(rh.keypoint_predictor(rh.keypoint_head(feats)), [boxes])
        keypoints, scores = kps[0], kp_scores[0]
    return masks, keypoints, scores


def _rpn_head(head: nn.Module, maps: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """torchvision's ``RPNHead.forward``, each convolution packed (``fpn_core.packed``: the same outputs)."""
    shared = [packed.run(head.conv, x) for x in maps]
    return [packed.conv2d(head.cls_logits, t) for t in shared], [packed.conv2d(head.bbox_pred, t) for t in shared]


def _rcnn_heads(
    det: FasterRCNN, spec: DetectorSpec, feats: DetectorFeatures, names: list[str], top_k: int, min_score: float
) -> _Raw:
    """torchvision's RPN and RoI heads (eval), keeping each box's proposal and its levels."""
    rpn, rh = det.rpn, det.roi_heads
    image_shape = feats.input_hw
    maps = list(feats.maps.values())

    # ---- RegionProposalNetwork.forward
    objectness, deltas = _rpn_head(rpn.head, maps)
    anchors, strides = _anchors(rpn.anchor_generator, feats.padded_hw, maps)
    per_level = [o[0].numel() for o in objectness]
    obj_maps = {n: torch.sigmoid(o[0]).amax(dim=0) for n, o in zip(names, objectness, strict=True)}
    obj, pred = concat_box_prediction_layers(objectness, deltas)
    proposals = rpn.box_coder.decode(pred.detach(), [torch.cat(anchors)]).view(1, -1, 4)

    # ---- RegionProposalNetwork.filter_proposals, keeping the level of every proposal
    obj = obj.detach().reshape(1, -1)
    lvl = torch.cat([torch.full((n,), i, dtype=torch.int64, device=obj.device) for i, n in enumerate(per_level)])
    lvl = lvl.reshape(1, -1).expand_as(obj)
    top_n_idx = rpn._get_top_n_idx(obj, per_level)
    batch_idx = torch.arange(1, device=obj.device)[:, None]
    obj, lvl, proposals = obj[batch_idx, top_n_idx][0], lvl[batch_idx, top_n_idx][0], proposals[batch_idx, top_n_idx][0]
    prob = torch.sigmoid(obj)
    boxes = box_ops.clip_boxes_to_image(proposals, image_shape)
    keep = box_ops.remove_small_boxes(boxes, rpn.min_size)
    boxes, prob, lvl = boxes[keep], prob[keep], lvl[keep]
    keep = torch.where(prob >= rpn.score_thresh)[0]
    boxes, prob, lvl = boxes[keep], prob[keep], lvl[keep]
    keep = box_ops.batched_nms(boxes, prob, lvl, rpn.nms_thresh)[: rpn.post_nms_top_n()]
    props, prob, lvl = boxes[keep], prob[keep], lvl[keep]

    kept: dict[str, tuple[int, Tensor, Tensor]] = {}
    for i, name in enumerate(names):
        mine = torch.where(lvl == i)[0]  # already sorted by objectness within the level (NMS order)
        kept[name] = (int(mine.numel()), props[mine[:top_k]], prob[mine[:top_k]])

    # ---- RoIHeads.forward: MultiScaleRoIAlign without writing its lazy scale cache. roi_align reads
    # contiguous maps: a channels_last pyramid is made contiguous once here, not by each pooler (box,
    # mask, keypoint) on each level.
    pooled_maps = {k: v.contiguous() for k, v in feats.maps.items()}
    box_features, mapper = _pool(rh.box_roi_pool, pooled_maps, props, image_shape)
    class_logits, box_regression = rh.box_predictor(rh.box_head(box_features))

    # ---- RoIHeads.postprocess_detections, keeping the proposal of every box
    num_classes = class_logits.shape[-1]
    pred_boxes = box_ops.clip_boxes_to_image(rh.box_coder.decode(box_regression, [props]), image_shape)
    scores = F.softmax(class_logits, -1)
    labels = torch.arange(num_classes, device=scores.device).view(1, -1).expand_as(scores)
    source = torch.arange(props.shape[0], device=scores.device).view(-1, 1).expand_as(scores)
    pred_boxes, scores, labels, source = pred_boxes[:, 1:], scores[:, 1:], labels[:, 1:], source[:, 1:]
    pred_boxes, scores = pred_boxes.reshape(-1, 4), scores.reshape(-1)
    labels, source = labels.reshape(-1), source.reshape(-1)
    inds = torch.where(scores > min_score)[0]
    pred_boxes, scores, labels, source = pred_boxes[inds], scores[inds], labels[inds], source[inds]
    keep = box_ops.remove_small_boxes(pred_boxes, min_size=1e-2)
    pred_boxes, scores, labels, source = pred_boxes[keep], scores[keep], labels[keep], source[keep]
    keep = box_ops.batched_nms(pred_boxes, scores, labels, rh.nms_thresh)[: rh.detections_per_img]
    pred_boxes, scores, labels, source = pred_boxes[keep], scores[keep], labels[keep], source[keep]

    masks, keypoints, keypoint_scores = _mask_and_keypoints(rh, pooled_maps, pred_boxes, labels, image_shape)
    sources = props[source]
    pooled = mapper([sources]) if sources.numel() else torch.zeros(0, dtype=torch.int64)
    k_min = stage_index(spec.pooled_levels[0])
    return _Raw(
        pred_boxes,
        scores,
        labels,
        [level_name(int(k) + k_min) for k in pooled],
        [names[int(i)] for i in lvl[source]],
        sources,
        obj_maps,
        kept,
        _anchor_info(rpn.anchor_generator, names, strides, [a.shape[0] for a in anchors]),
        masks,
        keypoints,
        keypoint_scores,
    )


def _dense_detections(
    det: RetinaNet | FCOS,
    names: list[str],
    scores_per_level: Sequence[Tensor],
    regression: Sequence[Tensor],
    anchors: Sequence[Tensor],
    decode: Callable[[Tensor, Tensor], Tensor],
    image_shape: tuple[int, int],
    min_score: float,
) -> tuple[Tensor, Tensor, Tensor, list[str], Tensor]:
    """torchvision's ``postprocess_detections`` of RetinaNet and FCOS (eval), keeping each box's level and anchor.

    ``scores_per_level`` are ``(positions × anchors, classes)`` scores: RetinaNet's class probabilities,
    FCOS's √(probability × centerness).
    """
    boxes_all, scores_all, labels_all, levels_all, anchors_all = [], [], [], [], []
    for i, (br, prob, an) in enumerate(zip(regression, scores_per_level, anchors, strict=True)):
        num_classes = prob.shape[-1]
        scores = prob.flatten()
        keep_idxs = scores > min_score
        if bool(keep_idxs.all()):  # min_score 0 (an untrained detector's view): nothing to drop, no copies
            scores, topk_idxs = scores.topk(min(det.topk_candidates, scores.numel()))
        else:
            scores = scores[keep_idxs]
            topk_idxs = torch.where(keep_idxs)[0]
            scores, idxs = scores.topk(min(det.topk_candidates, topk_idxs.size(0)))
            topk_idxs = topk_idxs[idxs]
        anchor_idxs = torch.div(topk_idxs, num_classes, rounding_mode="floor")
        labels = topk_idxs % num_classes
        boxes = decode(br[anchor_idxs], an[anchor_idxs])
        boxes_all.append(box_ops.clip_boxes_to_image(boxes, image_shape))
        scores_all.append(scores)
        labels_all.append(labels)
        levels_all.append(torch.full_like(labels, i))
        anchors_all.append(an[anchor_idxs])
    boxes, scores, labels = torch.cat(boxes_all), torch.cat(scores_all), torch.cat(labels_all)
    level_idx, sources = torch.cat(levels_all), torch.cat(anchors_all)
    keep = box_ops.batched_nms(boxes, scores, labels, det.nms_thresh)[: det.detections_per_img]
    levels = [names[int(i)] for i in level_idx[keep]]
    return boxes[keep], scores[keep], labels[keep], levels, sources[keep]


def _per_position(t: Tensor, n: int) -> Tensor:
    """``(N, A*n, H, W)`` -> ``(N, H*W*A, n)``: torchvision's dense heads' permute of one level."""
    b, _, h, w = t.shape
    return t.view(b, -1, n, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, n)


def _dense_head(head: nn.Module, maps: Sequence[Tensor]) -> dict[str, Tensor]:
    """torchvision's ``RetinaNetHead.forward`` or ``FCOSHead.forward``, each convolution packed
    (``fpn_core.packed``: the same outputs, without a weight reorder per call on the CPU)."""
    cls, reg = head.classification_head, head.regression_head
    logits = [_per_position(packed.conv2d(cls.cls_logits, packed.run(cls.conv, x)), cls.num_classes) for x in maps]
    out = {"cls_logits": torch.cat(logits, dim=1)}
    features = [packed.run(reg.conv, x) for x in maps]
    fcos = hasattr(reg, "bbox_ctrness")  # FCOS: distances through a ReLU, and a centerness
    out["bbox_regression"] = torch.cat(
        [_per_position(packed.conv2d(reg.bbox_reg, f, relu=fcos), 4) for f in features], 1
    )
    if fcos:
        out["bbox_ctrness"] = torch.cat([_per_position(packed.conv2d(reg.bbox_ctrness, f), 1) for f in features], 1)
    return out


def _retinanet_heads(
    det: RetinaNet, spec: DetectorSpec, feats: DetectorFeatures, names: list[str], top_k: int, min_score: float
) -> _Raw:
    """torchvision's RetinaNet head and post-processing (eval), keeping each box's anchor and level."""
    maps = list(feats.maps.values())
    head_outputs = _dense_head(det.head, maps)
    anchors, strides = _anchors(det.anchor_generator, feats.padded_hw, maps)
    hw = [m.shape[-2] * m.shape[-1] for m in maps]
    a = head_outputs["cls_logits"].size(1) // sum(hw)
    per_level = [n * a for n in hw]
    logits = head_outputs["cls_logits"][0].split(per_level)
    regression = head_outputs["bbox_regression"][0].split(per_level)
    probs = [torch.sigmoid(cl) for cl in logits]  # once, for the objectness maps and the boxes
    obj_maps = {
        n: p.view(m.shape[-2], m.shape[-1], -1).amax(dim=-1) for n, p, m in zip(names, probs, maps, strict=True)
    }
    boxes, scores, labels, levels, sources = _dense_detections(
        det, names, probs, regression, anchors, det.box_coder.decode_single, feats.input_hw, min_score
    )
    info = _anchor_info(det.anchor_generator, names, strides, [x.shape[0] for x in anchors])
    return _Raw(boxes, scores, labels, levels, list(levels), sources, obj_maps, {}, info)


def _fcos_heads(
    det: FCOS, spec: DetectorSpec, feats: DetectorFeatures, names: list[str], top_k: int, min_score: float
) -> _Raw:
    """torchvision's FCOS head and post-processing (eval), keeping each box's location and level.

    A location is FCOS's one "anchor" per position (a square the size of the stride); its score is
    √(class probability × centerness), and the objectness map per level is its maximum over classes.
    """
    maps = list(feats.maps.values())
    head_outputs = _dense_head(det.head, maps)
    anchors, strides = _anchors(det.anchor_generator, feats.padded_hw, maps)
    hw = [m.shape[-2] * m.shape[-1] for m in maps]
    logits = head_outputs["cls_logits"][0].split(hw)
    regression = head_outputs["bbox_regression"][0].split(hw)
    ctrness = head_outputs["bbox_ctrness"][0].split(hw)
    scores = [torch.sqrt(torch.sigmoid(cl) * torch.sigmoid(ct)) for cl, ct in zip(logits, ctrness, strict=True)]
    obj_maps = {n: s.amax(dim=-1).view(m.shape[-2], m.shape[-1]) for n, s, m in zip(names, scores, maps, strict=True)}
    boxes, scores_, labels, levels, sources = _dense_detections(
        det, names, scores, regression, anchors, det.box_coder.decode, feats.input_hw, min_score
    )
    info = _anchor_info(det.anchor_generator, names, strides, [x.shape[0] for x in anchors])
    return _Raw(boxes, scores_, labels, levels, list(levels), sources, obj_maps, {}, info)


#: The heads runner of each family: (model, spec, features, level names, top_k, min_score) -> _Raw.
_HEADS: dict[HeadFamily, Callable[..., _Raw]] = {
    RCNN: _rcnn_heads,
    RETINANET: _retinanet_heads,
    FCOS_FAMILY: _fcos_heads,
}


def run_heads(
    det: Detector, features: DetectorFeatures, *, top_k: int = TOP_K_PROPOSALS, min_score: float | None = None
) -> Detections:
    """Run the detector's heads on cached features: every detection torchvision's model returns.

    Args:
        det: the detector the features came from.
        features: from :func:`run_detector_features`.
        top_k: proposals kept per level for display (Faster R-CNN).
        min_score: the heads' own score threshold (None: torchvision's, 0.05). A lower value
            shows what an untrained detector proposes; outputs then differ from torchvision's.

    Returns:
        :class:`Detections` at ``score_threshold = min_score``; :func:`filter_detections`
        raises the threshold without running anything again.

    Raises:
        ValueError: features of another detector, or a bad ``top_k`` / ``min_score``.
    """
    spec = det.spec
    if features.detector != spec.name:
        raise ValueError(f"these features come from {features.detector}, not {spec.name}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k}")
    base = spec.family.score_threshold(det.model)
    min_score = base if min_score is None else float(min_score)
    if not 0.0 <= min_score < 1.0:
        raise ValueError(f"min_score must be in [0, 1), got {min_score}")
    names = list(features.levels)
    with device_slot(det.device), torch.inference_mode():
        raw = _HEADS[spec.family](det.model, spec, features, names, top_k, min_score)
        boxes = resize_boxes(raw.boxes, list(features.input_hw), list(features.image_hw))
        keypoints = None
        if raw.keypoints is not None:
            keypoints = resize_keypoints(raw.keypoints, features.input_hw, features.image_hw).float().cpu()
        proposals = {
            n: LevelProposals(
                count, resize_boxes(b, list(features.input_hw), list(features.image_hw)).cpu(), s.float().cpu()
            )
            for n, (count, b, s) in raw.proposals.items()
        }
    labels = raw.labels.cpu()
    return Detections(
        spec=spec,
        boxes=boxes.float().cpu(),
        scores=raw.scores.float().cpu(),
        labels=labels,
        names=tuple(_class_name(det, int(i)) for i in labels),
        levels=tuple(raw.levels),
        anchor_levels=tuple(raw.anchor_levels),
        source_boxes=raw.sources.float().cpu(),
        objectness={k: v.float().cpu() for k, v in raw.objectness.items()},
        proposals=proposals,
        anchors=raw.anchors,
        score_threshold=min_score,
        image_hw=features.image_hw,
        input_hw=features.input_hw,
        provenance=det.provenance,
        mask_probs=None if raw.mask_probs is None else raw.mask_probs[:, 0].float().cpu(),
        keypoints=keypoints,
        keypoint_scores=None if raw.keypoint_scores is None else raw.keypoint_scores.float().cpu(),
    )


def _class_name(det: Detector, label: int) -> str:
    classes = det.classes or det.spec.categories
    return classes[label] if 0 <= label < len(classes) else f"class {label}"


def filter_detections(dets: Detections, score_threshold: float) -> Detections:
    """Keep the detections scoring at least ``score_threshold`` (nothing runs again).

    A threshold below the one ``dets`` was made with cannot bring dropped boxes back; the
    result keeps the higher of the two.

    Raises:
        ValueError: a threshold outside [0, 1].
    """
    if not 0.0 <= float(score_threshold) <= 1.0:
        raise ValueError(f"score threshold must be in [0, 1], got {score_threshold!r}")
    threshold = max(float(score_threshold), dets.score_threshold)
    keep = [i for i, s in enumerate(dets.scores.tolist()) if s >= threshold]
    idx = torch.tensor(keep, dtype=torch.int64)
    return replace(
        dets,
        boxes=dets.boxes[idx],
        scores=dets.scores[idx],
        labels=dets.labels[idx],
        names=tuple(dets.names[i] for i in keep),
        levels=tuple(dets.levels[i] for i in keep),
        anchor_levels=tuple(dets.anchor_levels[i] for i in keep),
        source_boxes=dets.source_boxes[idx],
        score_threshold=threshold,
        mask_probs=None if dets.mask_probs is None else dets.mask_probs[idx],
        keypoints=None if dets.keypoints is None else dets.keypoints[idx],
        keypoint_scores=None if dets.keypoint_scores is None else dets.keypoint_scores[idx],
    )


def detect(det: Detector, image: np.ndarray, score_threshold: float = 0.5, *, size: int | None = None) -> Detections:
    """Detect objects in one image and trace each to its pyramid level.

    Args:
        det: from :func:`build_detector`.
        image: RGB uint8 (H, W, 3).
        score_threshold: keep detections scoring at least this (0 to 1).
        size: None for torchvision's input size (shorter side 800, longer at most 1333), else
            the long side in pixels.

    Returns:
        :class:`Detections`; boxes, scores and labels equal torchvision's model filtered at
        ``score_threshold``.

    Raises:
        ValueError: a bad image, size or threshold.
    """
    if not 0.0 <= float(score_threshold) <= 1.0:
        raise ValueError(f"score threshold must be in [0, 1], got {score_threshold!r}")
    return filter_detections(run_heads(det, run_detector_features(det, image, size=size)), score_threshold)
