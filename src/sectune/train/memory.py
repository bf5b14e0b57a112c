"""Peak memory of one training run, measured during that run only.

``ru_maxrss`` is the process's lifetime peak: in a study that trains several variants in one process,
every later run would inherit an earlier run's peak. On CPU we therefore sample the resident set size in a
background thread while training runs; on CUDA we reset and read the allocator's peak.
"""

from __future__ import annotations

import threading
from types import TracebackType


class PeakMemory:
    """``with PeakMemory() as peak: train()`` then ``peak.mb`` and ``peak.kind``."""

    def __init__(self, interval_s: float = 0.05, *, device: str = "auto") -> None:
        """``device``: auto (CUDA when present, else the CPU's resident set), cuda or cpu."""
        self.interval_s = interval_s
        self.device = device
        self.mb = 0.0
        self.start_mb = 0.0  # what the process held when the run began (CPU: resident set)
        self.kind = "peak_rss_sampled"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cuda = False

    def __enter__(self) -> PeakMemory:
        import torch

        self._cuda = self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available())
        if self._cuda:
            self.kind = "cuda_max_allocated"
            torch.cuda.reset_peak_memory_stats()
            return self
        self._sample()
        self.start_mb = self.mb
        self._thread = threading.Thread(target=self._run, name="sectune-peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._cuda:
            import torch

            self.mb = torch.cuda.max_memory_allocated() / 2**20
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        import psutil

        self.mb = max(self.mb, psutil.Process().memory_info().rss / 2**20)
