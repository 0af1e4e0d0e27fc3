"""Hot-path metrics as plain per-process tallies, folded into prometheus-client's metrics.

Every prometheus-client update takes a lock, and with `--processes N` also writes a
memory-mapped file; the activation path bumps several counters per request. A tally is an int
that the event-loop thread increments; `fold()` adds what accumulated to the real counter through
its public `inc(n)`, so names, labels and the multiprocess sum stay prometheus-client's. The
latency histograms are observed directly: prometheus-client has no public call that adds many
observations at once, and handing them over in bursts would stall the event loop.

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
from collections.abc import AsyncIterator, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter
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


class FoldingRegistry(CollectorRegistry):
    """A registry that folds its tallies before every collection."""

    def __init__(self) -> None:
        super().__init__()
        self._folders: list[Callable[[], None]] = []

    def fold_on_collect(self, tallies: Iterable[Tally]) -> None:
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
