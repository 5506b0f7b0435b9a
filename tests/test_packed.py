"""Packed convolutions (fpn_core.packed): the same numbers as torch's own, and a bounded cache."""

from __future__ import annotations

import gc
import threading

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fpn_core import build_backbone, packed

pytestmark = pytest.mark.skipif(not packed.enabled(), reason="torch without oneDNN's packed convolutions")

CL = torch.channels_last


def _conv(cin: int = 64, cout: int = 96, k: int = 3, stride: int = 1, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(cin, cout, k, stride, k // 2).eval().requires_grad_(False).to(memory_format=CL)


def _twice(fn):
    """A convolution is packed on its second use at a size: run twice, return the second (packed) result."""
    fn()
    return fn()


def _x(c: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(seed)).contiguous(memory_format=CL)


@pytest.mark.parametrize(("k", "stride"), [(3, 1), (1, 1), (3, 2), (1, 2)])
def test_conv_relu_and_residual_add_equal_torchs_bit_for_bit(k, stride):
    conv, x = _conv(k=k, stride=stride), _x(64, 33, 41)
    with torch.inference_mode():
        plain = conv(x)
        add = torch.randn(plain.shape).contiguous(memory_format=CL)
        before = packed.cache_info()["packs"]
        assert torch.equal(packed.conv2d(conv, x), plain)  # first use: the dense weight, nothing packed
        assert packed.cache_info()["packs"] == before
        assert torch.equal(packed.conv2d(conv, x), plain)  # second use: packed
        assert packed.cache_info()["packs"] == before + 1
        assert torch.equal(packed.conv2d(conv, x, relu=True), torch.relu(plain))
        assert torch.equal(packed.conv2d(conv, x, add=add), torch.relu(plain + add))  # add implies the ReLU
        assert packed.cache_info()["packs"] == before + 1  # one pack for this conv and size, reused
        assert packed.conv2d(conv, x).is_contiguous(memory_format=CL)


def test_the_first_use_and_the_packed_ones_give_the_same_numbers_on_small_maps_too():
    """Analyses must not change from their first run to the next (tests compare runs bit for bit)."""
    conv, x = _conv(256, 256, seed=10), _x(256, 4, 5)
    with torch.inference_mode():
        first = packed.conv2d(conv, x, relu=True)
        assert torch.equal(packed.conv2d(conv, x, relu=True), first)  # packed now
        assert torch.equal(packed.conv2d(conv, x, relu=True), first)


def test_small_maps_take_onednn_too_and_stay_within_rounding():
    """torch sends maps of at most 20480 values to its slow THNN path; packed, they use oneDNN."""
    conv, x = _conv(256, 256), _x(256, 4, 5)
    with torch.inference_mode():
        ours = _twice(lambda: packed.conv2d(conv, x, relu=True))
        torch.testing.assert_close(ours, torch.relu(conv(x)), rtol=1e-5, atol=1e-5)


def test_run_fuses_conv_relu_in_nested_sequentials_and_runs_the_rest_as_is():
    torch.manual_seed(3)
    seq = nn.Sequential(
        nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()),  # torchvision's Conv2dNormActivation shape
        nn.Conv2d(32, 32, 3, padding=1),
        nn.GroupNorm(8, 32),
        nn.ReLU(),
        nn.Conv2d(32, 16, 1),
    ).eval()
    seq.to(memory_format=CL)
    x = _x(32, 24, 40)
    with torch.inference_mode():
        before = packed.cache_info()["convolutions"]
        torch.testing.assert_close(_twice(lambda: packed.run(seq, x)), seq(x), rtol=0, atol=1e-6)
        assert packed.cache_info()["convolutions"] == before + 3  # all three packed on the second call
        packed.run(seq, x)
        assert packed.cache_info()["convolutions"] == before + 3


def test_torchs_own_convolutions_where_packing_does_not_apply():
    conv, x = _conv(), _x(64, 21, 19)
    start = packed.cache_info()["packs"]
    with torch.inference_mode():
        _twice(lambda: packed.conv2d(conv, x.contiguous()))  # NCHW
        with packed.packing(False):
            assert torch.equal(_twice(lambda: packed.conv2d(conv, x, relu=True)), torch.relu(conv(x)))
        with FlopCounterMode(display=False) as flops:
            packed.conv2d(conv, x)
            packed.conv2d(conv, x)  # a second use, which would pack: the counter still sees both
        assert flops.get_total_flops() == 2 * 2 * 64 * 96 * 9 * 21 * 19
    leaf = x.clone().requires_grad_(True)
    packed.conv2d(conv, leaf, relu=True)
    y = packed.conv2d(conv, leaf, relu=True)  # autograd (the receptive fields): torch's own
    assert y.grad_fn is not None
    y.sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0
    assert packed.cache_info()["packs"] == start


def test_a_weight_changed_in_place_is_packed_again():
    conv, x = _conv(seed=4), _x(64, 30, 30)
    with torch.inference_mode():
        first = _twice(lambda: packed.conv2d(conv, x))
        held = packed.cache_info()["packs"]
    with torch.no_grad():
        conv.weight.mul_(2.0)  # load_state_dict copies in place the same way
    with torch.inference_mode():
        again = _twice(lambda: packed.conv2d(conv, x))
        assert packed.cache_info()["packs"] == held + 1
        assert torch.equal(again, conv(x))
        assert not torch.equal(again, first)


def test_a_dropped_module_takes_its_packs_with_it():
    x = _x(64, 26, 26)
    start = packed.cache_info()
    conv = _conv(seed=5)
    small = _x(64, 13, 13)
    with torch.inference_mode():
        for _ in range(2):  # packed on the second use at each size
            packed.conv2d(conv, x)
            packed.conv2d(conv, small)
    held = packed.cache_info()
    assert held["packs"] >= start["packs"] + 2 and held["bytes"] > start["bytes"]
    del conv
    gc.collect()
    assert packed.cache_info()["convolutions"] == held["convolutions"] - 1


def test_a_module_moved_to_new_storage_is_packed_again():
    """``module.to(...)`` swaps a parameter's storage without a version bump: the pack follows the storage."""
    conv, x = _conv(seed=8), _x(64, 28, 28)
    with torch.inference_mode():
        _twice(lambda: packed.conv2d(conv, x))
    with torch.no_grad():
        conv.weight.data = (conv.weight * -1.0).contiguous(memory_format=CL)
    with torch.inference_mode():
        assert torch.equal(_twice(lambda: packed.conv2d(conv, x)), conv(x))


def test_the_garbage_collector_may_drop_a_module_while_the_cache_is_busy():
    """The finalizer only notes the module; its packs go under the cache's lock at the next call."""
    cache = packed._Cache(budget_bytes=2**30)
    conv = _conv(seed=9)
    with torch.inference_mode():
        assert cache.get(conv, (1, 12, 12)) is None and cache.get(conv, (1, 12, 12)) is not None
    with cache._lock:  # as if collected inside one of the cache's locked sections
        cache._forget(id(conv))  # must not take the (non-reentrant) lock
    assert cache.info()["packs"] == 0 and cache.bytes == 0


def test_the_cache_keeps_to_its_budget_least_recently_used_out():
    cache = packed._Cache(budget_bytes=3 * 64 * 96 * 9 * 4)  # three packs of this conv's size
    conv = _conv(seed=6)
    sizes = [(1, 10 + i, 12) for i in range(5)]
    with torch.inference_mode():
        for size in sizes:
            assert cache.get(conv, size) is None  # the first use keeps no pack
            assert cache.get(conv, size) is not None
        assert cache.bytes <= cache.budget_bytes and cache.info()["packs"] == 3
        kept = [k[1] for k in cache._packs]
        assert kept == sizes[-3:]
        cache.get(conv, sizes[2])  # a hit moves to the back
        assert [k[1] for k in cache._packs] == [sizes[3], sizes[4], sizes[2]]


def test_threads_share_the_packs_and_get_the_same_numbers():
    conv, x = _conv(seed=7), _x(64, 40, 40)
    with torch.inference_mode():
        expected = torch.relu(conv(x))
    results: list[bool] = []

    def work():
        with torch.inference_mode():
            results.extend(torch.equal(packed.conv2d(conv, x, relu=True), expected) for _ in range(5))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 20


@pytest.fixture(scope="module")
def folded():
    body = build_backbone("random", device="cpu", allow_download=False)
    assert body.folded
    return body


@pytest.mark.parametrize("hw", [(224, 224), (256, 320), (193, 257)])
def test_the_folded_backbone_packed_equals_torchs_bottlenecks_bit_for_bit(folded, hw):
    x = _x(3, *hw)
    with torch.inference_mode():
        ours = _twice(lambda: folded(x))
        with packed.packing(False):
            torchs = folded(x)
        blocks = {}
        y = folded.maxpool(folded.relu(folded.conv1(x)))
        for name, layer in zip(
            ("c2", "c3", "c4", "c5"), (folded.layer1, folded.layer2, folded.layer3, folded.layer4), strict=True
        ):
            y = blocks[name] = layer(y)  # torchvision's Bottleneck.forward itself
    for key, t in torchs.items():
        assert torch.equal(ours[key], t), key
    for key, t in blocks.items():
        assert torch.equal(ours[key], t), key
