"""Concurrent visitors' encodings run as one batch.

Each request of the app encodes one history (and, with a reveal, one partly masked item). One at a time, a
history costs about 28 ms on one CPU core; eight together cost about 7 ms each on two (length-sorted, padded
to the longest): a server under load answers several times as many requests when the handlers' encodings
meet in one forward pass. :class:`MicroBatcher` does that without adding latency: the first request is
encoded at once, and the requests that arrive while it runs wait for the next pass and share it.
"""
from __future__ import annotations

import ctypes
import queue
import threading
from concurrent.futures import Future
from typing import Callable, Sequence

# Ranking requests (the API's /recommend, /recommend_catalogue, /new_item, /search and the page's re-ranking)
# served at once: they wait on shared passes, so more of them in flight make larger, cheaper batches. Other
# events keep the app's --concurrency (a scoreboard or a comparison is not batched).
RANKING_CONCURRENCY = 16
# Passes between two returns of freed heap memory to the OS: each batch has its own shape, so its activations
# leave holes glibc keeps mapped (a server under load grew by a few hundred MB without it).
TRIM_EVERY = 64


def trim_heap() -> None:
    """glibc's malloc_trim: give freed heap pages back to the OS."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): RSS simply falls later or not at all
        pass


class MicroBatcher:
    """``batcher(fn, item)`` returns ``fn([item])[0]``, computed together with the other callers' items of the
    same ``fn`` that are waiting when a pass starts (``fn`` maps a list to a sequence of results, in order;
    a bound method such as ``Recommender.embed_history`` keys the group). One worker thread runs every pass,
    so the model's intra-op threads are never oversubscribed by concurrent handlers."""

    def __init__(self, max_batch: int = RANKING_CONCURRENCY):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self.passes = 0  # how many forward passes ran, and over how many items (for measurements)
        self.items = 0

    def __call__(self, fn: Callable[[Sequence], Sequence], item):
        if threading.current_thread() is self._worker:  # a pass that itself encodes: no waiting on oneself
            return fn([item])[0]
        done: Future = Future()
        self._queue.put((fn, item, done))
        self._start()
        return done.result()

    def _start(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            jobs = [self._queue.get()]
            while len(jobs) < self.max_batch:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            groups: dict = {}
            for fn, item, done in jobs:
                groups.setdefault(fn, []).append((item, done))
            for fn, pairs in groups.items():
                self._pass(fn, pairs)

    def _pass(self, fn, pairs: list) -> None:
        try:
            results = fn([item for item, _ in pairs])
        except Exception as err:  # each caller gets its own item's outcome, not a neighbour's error
            if len(pairs) == 1:
                pairs[0][1].set_exception(err)
            else:
                for pair in pairs:
                    self._pass(fn, [pair])
            return
        self.passes += 1
        self.items += len(pairs)
        if self.passes % TRIM_EVERY == 0:
            trim_heap()
        for (_, done), result in zip(pairs, results):
            done.set_result(result)
