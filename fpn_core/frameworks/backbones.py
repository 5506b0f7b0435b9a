"""Check that a framework's backbone is the ResNet-50 FPN Explorer shows, and name it when it is not."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor
from torchvision.models import resnet50

from .record import FrameworkError

#: Blocks per stage of torchvision's bottleneck ResNets (layer1..layer4), by depth.
BOTTLENECK_DEPTHS: dict[tuple[int, int, int, int], int] = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
#: Markers of backbones that are not ResNets, in any framework's key names.
_OTHER_TYPES: tuple[tuple[str, str], ...] = (
    ("relative_position_bias_table", "a Swin Transformer"),
    ("patch_embed", "a vision transformer (patch embedding)"),
    ("attn.", "a transformer (attention layers)"),
    ("conv_offset", "a ResNet with deformable convolutions (DCN)"),
    ("backbone.stem.0.", "a ResNetV1d (deep stem)"),
    ("dwconv", "a ConvNeXt-style network (depth-wise convolutions)"),
)
_BLOCK = re.compile(r"^layer(\d)\.(\d+)\.")


def _resnet50_shapes() -> dict[str, torch.Size]:
    with torch.device("meta"):  # shapes without allocating 100 MB
        model = resnet50()
    return {k: v.shape for k, v in model.state_dict().items() if not k.startswith("fc.")}


_SHAPES: dict[str, torch.Size] | None = None


def resnet50_shapes() -> dict[str, torch.Size]:
    """torchvision ResNet-50's state dict shapes without ``fc`` (``num_batches_tracked`` included)."""
    global _SHAPES
    if _SHAPES is None:
        _SHAPES = _resnet50_shapes()
    return _SHAPES


def other_backbone_type(raw_keys: Iterable[str]) -> str | None:
    """The kind of a backbone that is plainly not a ResNet, from a framework's raw key names, or None."""
    heads = ("neck.", "roi_", "rpn_", "bbox_", "proposal_generator.", "head.", "sem_seg_head.")
    keys = [k for k in raw_keys if not k.startswith(heads)]
    for marker, kind in _OTHER_TYPES:
        if any(marker in k for k in keys):
            return kind
    return None


def describe_resnet(state: Mapping[str, Tensor]) -> str | None:
    """What ResNet a torchvision-named state dict holds when it is not ResNet-50, else None.

    Depth from the blocks per stage (layer3 has 6 blocks in ResNet-50, 23 in 101, 36 in 152),
    basic blocks (no ``conv3``: ResNet-18/34) and grouped 3x3 convolutions (ResNeXt).
    """
    blocks = [0, 0, 0, 0]
    for key in state:
        m = _BLOCK.match(key)
        if m and 1 <= int(m.group(1)) <= 4:
            blocks[int(m.group(1)) - 1] = max(blocks[int(m.group(1)) - 1], int(m.group(2)) + 1)
    if not any(blocks):
        return None
    counts = tuple(blocks)
    if "layer1.0.conv3.weight" not in state:
        depth = {(2, 2, 2, 2): "18", (3, 4, 6, 3): "34"}.get(counts, "")
        return f"a ResNet-{depth or '?'} with basic blocks ({counts[2]} blocks in layer3/res4)"
    conv1, conv2 = state.get("layer1.0.conv1.weight"), state.get("layer1.0.conv2.weight")
    if conv1 is not None and conv2 is not None and conv2.shape[1] != conv1.shape[0]:
        groups = conv1.shape[0] // max(1, conv2.shape[1])
        return f"a ResNeXt ({groups} groups in the 3×3 convolutions, {counts[2]} blocks in layer3/res4)"
    depth = BOTTLENECK_DEPTHS.get(counts)
    if depth == 50:
        return None
    name = f"a ResNet-{depth}" if depth else "a ResNet of unknown depth"
    return f"{name} ({counts[2]} blocks in layer3/res4; ResNet-50 has 6)"


def check_resnet50(state: Mapping[str, Tensor], where: str) -> None:
    """Every ResNet-50 tensor is present with its shape, and nothing else is there.

    Args:
        state: torchvision names (``num_batches_tracked`` and ``fc.*`` may be absent).
        where: the file, for messages.

    Raises:
        FrameworkError: one message naming the backbone found (depth or type), or the first
            key or shape that does not fit.
    """
    other = describe_resnet(state)
    if other:
        raise FrameworkError(f"{where} holds {other}; FPN Explorer shows ResNet-50 only")
    shapes = resnet50_shapes()
    needed = [k for k in shapes if not k.endswith("num_batches_tracked")]
    missing = [k for k in needed if k not in state]
    unexpected = [k for k in state if k not in shapes]
    if missing or unexpected:
        raise FrameworkError(
            f"{where} does not hold a ResNet-50: {len(missing)} tensors missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(shapes[key]):
            raise FrameworkError(
                f"{where} does not hold a ResNet-50: {key} has shape {tuple(tensor.shape)}, "
                f"ResNet-50 needs {tuple(shapes[key])}"
            )
