"""Many sessions at once: a shared read-only model gives every thread exactly its own answer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from fpn_core import run_pyramid


def _image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = 96 + 8 * seed, 128 - 4 * seed
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_concurrent_analyses_equal_the_same_analysis_run_alone(random_pyramid):
    jobs = [(16 * (i + 1), _image(i)) for i in range(8)]  # a different width and image each
    models = {w: random_pyramid(out_channels=w) for w, _ in jobs}
    backbone = models[16].backbone  # every width's model runs on this one
    alone = [run_pyramid(models[w], img, size=128) for w, img in jobs]
    state_before = {k: v.clone() for k, v in backbone.state_dict().items()}

    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(lambda job: run_pyramid(models[job[0]], job[1], size=128), jobs * 2))

    for i, out in enumerate(together):
        ref = alone[i % len(jobs)]
        assert out.config.out_channels == jobs[i % len(jobs)][0]
        assert np.array_equal(out.image, ref.image)
        for name in ref.levels:
            assert torch.equal(out.levels[name], ref.levels[name]), (i, name)
        for name in ref.stages:
            assert torch.equal(out.stages[name], ref.stages[name]), (i, name)
    # the shared model is read-only: nothing was registered on it and no weight changed
    assert not backbone._forward_hooks and not backbone._forward_pre_hooks
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in state_before.items())
    assert not any(p.requires_grad for p in backbone.parameters())
    assert not backbone.training


def test_cpu_analyses_are_serialized_by_the_device_slot(random_pyramid, monkeypatch):
    """At most one analysis runs on the CPU at a time, so timings stay honest and memory bounded."""
    import threading
    import time

    import fpn_core.pyramid as pyramid

    active, peak = 0, 0
    lock = threading.Lock()
    real_repeat = pyramid._repeat

    def spying_repeat(*args, **kwargs):
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        try:
            return real_repeat(*args, **kwargs)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(pyramid, "_repeat", spying_repeat)
    model = random_pyramid(out_channels=16)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: run_pyramid(model, _image(i), size=64), range(4)))
    assert peak == 1
