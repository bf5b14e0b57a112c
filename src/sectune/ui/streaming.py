"""A callback-streaming answer (``on_token``) as an iterator of text pieces, for ``st.write_stream``."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

_DONE = object()


def stream_tokens(answer: Callable[[Callable[[str], None]], Any]) -> Iterator[str]:
    """Run ``answer(on_token)`` in a thread and yield each piece it passes to ``on_token`` as it comes;
    an exception inside ``answer`` is raised here, after the pieces that came before it."""
    pieces: queue.Queue[Any] = queue.Queue()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            answer(pieces.put)
        except BaseException as exc:  # handed to the reader, never lost in the thread
            failure.append(exc)
        finally:
            pieces.put(_DONE)

    worker = threading.Thread(target=work, name="sectune-ui-answer", daemon=True)
    worker.start()
    while (piece := pieces.get()) is not _DONE:
        yield piece
    worker.join()
    if failure:
        raise failure[0]
