"""Progress of every long step, one way everywhere: a live bar on a terminal, plain lines in a log.

Off a terminal (a log file, CI, a pipe) a tracker writes one plain line at a steady pace, like pip and HF
datasets: when ``interval_s`` (10 s) has passed or 5 % more of the total is done, whichever comes first,
plus a heartbeat while a step shows no countable progress (a model loading, one long batch), so a log never
goes silent. ``SECTUNE_PROGRESS=bar|plain|off`` overrides the choice; ``SECTUNE_PROGRESS_INTERVAL`` the pace.

Third-party bars (loading weights, tokenizing, dataset maps) are switched off: on a log they are
carriage-return soup, and sectune's own tracker already says where the step stands.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from types import TracebackType
from typing import IO, Any

MODES = ("bar", "plain", "off")
DEFAULT_INTERVAL_S = 10.0
STEP_FRACTION = 0.05  # a plain line at least every 5 % of the total

# Set by the UI for its jobs (its Stop button sends SIGINT): the CLI then restores Python's Ctrl-C handler even
# where SIGINT came ignored, as it does for every child of a UI started with ``nohup … &``.
INTERRUPTIBLE = "SECTUNE_INTERRUPTIBLE"


def progress_mode(stream: IO[str] | None = None) -> str:
    """bar on a terminal, plain elsewhere; SECTUNE_PROGRESS wins when set to a known mode."""
    if os.environ.get("RANK", "0") not in ("", "0"):
        return "off"  # multi-process training: the main process reports for all
    chosen = os.environ.get("SECTUNE_PROGRESS", "").strip().lower()
    if chosen in MODES:
        return chosen
    stream = stream or sys.stderr
    return "bar" if getattr(stream, "isatty", lambda: False)() else "plain"


def progress_interval() -> float:
    try:
        return max(0.05, float(os.environ.get("SECTUNE_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def quiet_third_party_bars() -> None:
    """Switch off huggingface_hub, transformers and datasets bars (now and for modules imported later)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


class _Open:
    """The trackers open now, innermost last, and the one live display they share on a terminal.

    Only the innermost tracker beats (a nested step reports for the step around it), and rich allows one
    live display at a time, so nested bars are tasks of one shared ``rich.progress.Progress``.
    """

    lock = threading.Lock()
    trackers: list[Tracker] = []
    bar: Any = None

    @classmethod
    def push(cls, tracker: Tracker) -> None:
        with cls.lock:
            cls.trackers.append(tracker)

    @classmethod
    def pop(cls, tracker: Tracker) -> None:
        with cls.lock:
            if tracker in cls.trackers:
                cls.trackers.remove(tracker)
            if cls.bar is not None and not any(t.mode == "bar" for t in cls.trackers):
                cls.bar.stop()
                cls.bar = None

    @classmethod
    def innermost(cls) -> Tracker | None:
        with cls.lock:
            return cls.trackers[-1] if cls.trackers else None

    @classmethod
    def shared_bar(cls, stream: IO[str]) -> Any:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with cls.lock:
            if cls.bar is None:
                cls.bar = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[unit]}"),
                    TimeRemainingColumn(),
                    TextColumn("{task.fields[note]}"),
                    console=Console(file=stream),
                    transient=False,
                )
                cls.bar.start()
            return cls.bar


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Tracker:
    """``with track("prep", total=n, unit="rows") as t: t.advance()`` — or ``t.update(done, note=...)``.

    ``total=None`` tracks a step without a count (loading a model): only the elapsed time is shown.
    ``start`` is where a resumed run begins: the rate counts only this session's work. ``show_rate=False``
    for uneven units (prep's steps, eval's targets), whose rate and ETA would mislead.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "items",
        start: int = 0,
        stream: IO[str] | None = None,
        mode: str | None = None,
        interval_s: float | None = None,
        show_rate: bool = True,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.show_rate = show_rate  # off for uneven units (prep's steps, eval's targets): no rate, no ETA
        self.done = self._start = start
        self.note = ""
        self.stream = stream or sys.stderr
        self.mode = mode or progress_mode(self.stream)
        self.interval_s = interval_s if interval_s is not None else progress_interval()
        self._started = self._rate_since = self._last_line = time.monotonic()
        self._last_fraction = self._fraction()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._bar: Any = None
        self._task: Any = None
        self._closed = False

    # ------------------------------------------------------------ life cycle

    def __enter__(self) -> Tracker:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(failed=exc_type is not None)

    def open(self) -> Tracker:
        quiet_third_party_bars()
        if self.mode != "off":
            _Open.push(self)
        if self.mode == "bar":
            self._open_bar()
        elif self.mode == "plain":
            if self._start:
                self._write(f"{self.label}: resuming at {self._count()}")
            self._heartbeat = threading.Thread(target=self._beat, name=f"sectune-progress-{self.label}", daemon=True)
            self._heartbeat.start()
        return self

    def close(self, *, failed: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, refresh=True)
        elif self.mode == "plain" and not failed:
            self._write(f"{self.label}: {self._count()} done in {format_duration(self.elapsed_s)}")
        _Open.pop(self)

    # ------------------------------------------------------------ updates

    def update(self, done: int | None = None, *, total: int | None = None, note: str | None = None) -> None:
        """Set the count (and optionally a new total or a short note such as 'rejected 2')."""
        with self._lock:
            if total is not None:
                self.total = total
            if done is not None:
                self.done = done
            if note is not None:
                self.note = note
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, total=self.total, note=self.note)
        elif self.mode == "plain" and self._due():
            self._line()

    def begin(self, total: int | None, *, start: int = 0, note: str = "") -> None:
        """Start counting (again) from ``start`` of ``total``: a step whose size is known only now, or a resume."""
        with self._lock:
            self.total, self.done, self._start, self.note = total, start, start, note
            self._rate_since = time.monotonic()
            self._last_fraction = self._fraction()
        if self._bar is not None:
            self._bar.reset(self._task, total=total, completed=start, note=note)
        elif self.mode == "plain":
            self._line()

    def advance(self, n: int = 1, *, note: str | None = None) -> None:
        self.update(self.done + n, note=note)

    def write(self, text: str) -> None:
        """A message between progress lines (above the bar on a terminal); never dropped in off mode."""
        if self._bar is not None:
            self._bar.console.print(text, highlight=False, markup=False)
        else:
            self._write(text)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    def status_line(self) -> str:
        """``prep: 1200/5000 rows (24%) · 310/s · ETA 12s · note``, as a plain line shows it."""
        parts = [f"{self.label}: {self._count()}"]
        counting_s = time.monotonic() - self._rate_since
        rate = (self.done - self._start) / counting_s if counting_s > 0 else 0.0
        if self.show_rate and self.done > self._start:
            parts.append(f"{rate:.3g}/s" if rate < 10 else f"{rate:.0f}/s")
        if self.show_rate and self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {format_duration((self.total - self.done) / rate)}")
        parts.append(f"{format_duration(self.elapsed_s)} elapsed")
        if self.note:
            parts.append(self.note)
        return " · ".join(parts)

    # ------------------------------------------------------------ internals

    def _count(self) -> str:
        if self.total is None:
            return f"{self.done} {self.unit}" if self.done else "working"
        percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return f"{self.done}/{self.total} {self.unit}{percent}"

    def _fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def _due(self) -> bool:
        """5 % more done, and not within a second of the last line (a fast step writes a few lines, not 20)."""
        stepped = self._fraction() - self._last_fraction >= STEP_FRACTION - 1e-9  # 0.15 - 0.10 < 0.05 in floats
        return stepped and time.monotonic() - self._last_line >= min(1.0, self.interval_s / 10)

    def _line(self) -> None:
        with self._lock:
            self._last_line = time.monotonic()
            self._last_fraction = self._fraction()
            text = self.status_line()
        self._write(text)

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval_s)):
            quiet = time.monotonic() - self._last_line < self.interval_s
            if not quiet and _Open.innermost() is self:
                self._line()

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stream must not break the work
            print(text, file=self.stream, flush=True)

    def _open_bar(self) -> None:
        self._bar = _Open.shared_bar(self.stream)
        self._task = self._bar.add_task(self.label, total=self.total, completed=self.done, unit=self.unit, note="")


def track(label: str, total: int | None = None, **options: Any) -> Tracker:
    """A :class:`Tracker` to use as a context manager."""
    return Tracker(label, total, **options)
