"""Peak memory is measured per run: a run that allocates shows it, a later run that does not, does not."""

import numpy as np

from sectune.train.memory import PeakMemory


def test_peak_memory_is_per_run_not_the_process_lifetime_peak():
    # the CPU path, on any machine: host allocations never show in a CUDA allocator's peak
    with PeakMemory(interval_s=0.01, device="cpu") as big:
        block = np.ones(300 * 2**20 // 8)  # 300 MB, touched
        block.sum()
        del block
    with PeakMemory(interval_s=0.01, device="cpu") as small:
        np.ones(1000).sum()
    assert big.kind == small.kind == "peak_rss_sampled"
    assert big.mb - small.mb > 200
    assert 0 < big.start_mb <= big.mb - 200


def test_auto_measures_the_cuda_allocator_where_cuda_is_present(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 3 * 2**30)
    with PeakMemory() as peak:
        pass
    assert (peak.kind, peak.mb) == ("cuda_max_allocated", 3 * 1024)
