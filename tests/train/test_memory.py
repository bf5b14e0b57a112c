"""Peak memory is measured per run: a run that allocates shows it, a later run that does not, does not."""

import numpy as np

from sectune.train.memory import PeakMemory


def test_peak_memory_is_per_run_not_the_process_lifetime_peak():
    with PeakMemory(interval_s=0.01) as big:
        block = np.ones(300 * 2**20 // 8)  # 300 MB, touched
        block.sum()
        del block
    with PeakMemory(interval_s=0.01) as small:
        np.ones(1000).sum()
    assert big.kind == small.kind == "peak_rss_sampled"
    assert big.mb - small.mb > 200
    assert 0 < big.start_mb <= big.mb - 200
