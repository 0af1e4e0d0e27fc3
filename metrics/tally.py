"""Hot-path metrics as plain per-process tallies, folded into prometheus-client's metrics.

Every prometheus-client update takes a lock, a histogram's `observe()` walks its buckets in a
Python loop, and with `--processes N` every update also writes a memory-mapped file. The
activation path makes five such updates per request; with them stubbed out the server's CPU per
activation fell from ≈ 100 to ≈ 84 µs (2026-12-01, one process pinned to its own core, medians
of three interleaved runs; README, Benchmark). A tally is an int, or a list of bucket counts,
that the event-loop thread bumps; `fold()` adds what accumulated to the real metric and zeroes
the tally, so names, labels, buckets and the multiprocess sum stay prometheus-client's.

When the numbers reach prometheus-client:

- on every collection of the process's own registry (`FoldingRegistry.collect`): a scrape of a
  single process, or a test reading the registry, sees every update made before it;
- in multiprocess mode (`--processes N`), the process that answers a scrape folds its own
  tallies first, and every process folds once a second (`fold_periodically`) and when it stops:
  the other processes' updates reach a scrape at most about a second late, which Prometheus's
  scrape interval (15 s and up) does not notice.

Tallies are touched only by their process's event-loop thread, which also folds them: no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric

FOLD_EVERY_SECONDS = 1.0


class Tally:
    """Counts for one counter (or one labelled child of it)."""

    __slots__ = ("_counter", "count")

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self.count = 0

    def inc(self) -> None:
        self.count += 1

    def fold(self) -> None:
        count = self.count
        if count:
            self.count = 0
            self._counter.inc(count)


class LatencyTally:
    """Observations for one histogram: a count per bucket (the same `le` bounds, the value
    counted in the first bucket whose bound is ≥ it, as `Histogram.observe` does) and the sum."""

    __slots__ = ("_bounds", "_counts", "_histogram", "_sum")

    def __init__(self, histogram: Histogram, bounds: Sequence[float]) -> None:
        self._histogram = histogram
        self._bounds = tuple(float(bound) for bound in bounds)
        self._counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def fold(self) -> None:
        counts = self._counts
        if not any(counts):
            return
        total = self._sum
        self._counts, self._sum = [0] * len(counts), 0.0
        # prometheus-client has no public call that adds n observations to a bucket; its
        # per-bucket values are `_buckets` (non-cumulative, one per bound and +Inf) and `_sum`.
        # tests/unit/test_metrics_tally.py compares a fold with the same observe() calls, so a
        # release that changes these fails the tests, not the numbers.
        buckets = self._histogram._buckets
        if len(buckets) != len(counts):
            raise RuntimeError("histogram buckets differ from the tally's")
        for bucket, count in zip(buckets, counts, strict=True):
            if count:
                bucket.inc(count)
        self._histogram._sum.inc(total)


class FoldingRegistry(CollectorRegistry):
    """A registry that folds its tallies before every collection."""

    def __init__(self) -> None:
        super().__init__()
        self._folders: list[Callable[[], None]] = []

    def fold_on_collect(self, tallies: Iterable[Tally | LatencyTally]) -> None:
        self._folders.extend(tally.fold for tally in tallies)

    def fold(self) -> None:
        for fold in self._folders:
            fold()

    def collect(self) -> Iterable[Metric]:
        self.fold()
        return super().collect()


@contextlib.asynccontextmanager
async def fold_periodically(
    registry: FoldingRegistry, every: float = FOLD_EVERY_SECONDS
) -> AsyncIterator[None]:
    """While the body runs, fold `registry`'s tallies every `every` seconds; once more at the
    end."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(every)
            registry.fold()

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        registry.fold()
