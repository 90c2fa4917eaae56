"""``Prefetcher``: computes results in a background thread, a bounded number ahead of the consumer.

The thread holds no reference to whoever owns the prefetcher, so an abandoned prefetcher is
garbage collected, and collecting it stops and joins the thread.
"""
from __future__ import annotations

import queue
import threading

THREAD_NAME = "lamina-data-prefetch"
_END = object()


class _Raised:
    """An exception of the worker, carried through the queue to the consumer."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    # A plain blocking put would hang forever once the consumer has gone; the timeout lets the
    # worker notice ``stop``. get() wakes a waiting put at once, so this costs no latency.
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            pass
    return False


def _produce(fn, items, q: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in items:
            if stop.is_set() or not _put(q, fn(item), stop):
                return
        _put(q, _END, stop)
    except BaseException as error:  # noqa: BLE001 - KeyboardInterrupt too must reach the consumer
        _put(q, _Raised(error), stop)


class Prefetcher:
    """Yields ``fn(item)`` for each item in order, computed by a thread up to ``depth >= 1`` ahead.

    ``get()`` returns the next result, raises ``StopIteration`` at the end, and re-raises an
    exception of ``fn`` with its original type. ``close()`` stops the thread and waits for it;
    it runs by itself at the end, on an exception, and when the prefetcher is collected.
    """

    def __init__(self, fn, items, depth: int):
        self._queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=_produce, args=(fn, items, self._queue, self._stop),
                                        name=THREAD_NAME, daemon=True)
        self._thread.start()

    def get(self):
        item = self._queue.get()
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Raised):
            self.close()
            raise item.error
        return item

    def close(self) -> None:
        self._stop.set()
        # Emptying the queue frees prefetched batches now and unblocks a worker waiting to put.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        # The cyclic GC may collect us on the worker thread itself, which cannot join itself.
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def __del__(self):
        self.close()
