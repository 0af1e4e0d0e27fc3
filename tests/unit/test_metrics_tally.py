"""Tallies (metrics/tally.py) give exactly the numbers prometheus-client's own updates give."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from metrics import LATENCY_BUCKETS, ApiMetrics
from metrics.tally import FoldingRegistry, LatencyTally, Tally, fold_periodically

# Below the first bound, on bounds exactly (counted in that bucket: `le`), between them, above
# the last one (+Inf only), zero.
OBSERVED = (0.0, 0.0001, 0.0005, 0.00050001, 0.001, 0.003, 0.01, 0.7, 1.0, 1.5, 42.0, 0.0005)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


@pytest.mark.parametrize("folds", [1, 3])
def test_folded_histogram_equals_observed_histogram(folds: int) -> None:
    direct_registry, tallied_registry = CollectorRegistry(), FoldingRegistry()
    direct = Histogram("latency_seconds", "x", buckets=LATENCY_BUCKETS, registry=direct_registry)
    tallied = Histogram("latency_seconds", "x", buckets=LATENCY_BUCKETS, registry=tallied_registry)
    tally = LatencyTally(tallied)
    tallied_registry.fold_on_collect([tally])
    for round_ in range(folds):  # folding in between must not count anything twice
        for seconds in OBSERVED:
            direct.observe(seconds)
            tally.observe(seconds)
        if round_ < folds - 1:
            tally.fold()
    expected = _samples(direct_registry)
    assert expected[("latency_seconds_count", ())] == len(OBSERVED) * folds
    assert _samples(tallied_registry) == expected
    assert _samples(tallied_registry) == expected  # collecting again adds nothing


def test_counter_tally_adds_its_count_once() -> None:
    registry = FoldingRegistry()
    tally = Tally(Counter("answers_total", "x", registry=registry))
    registry.fold_on_collect([tally])
    for _ in range(5):
        tally.inc()
    assert registry.get_sample_value("answers_total") == 5
    tally.inc()
    assert registry.get_sample_value("answers_total") == 6
    assert tally.count == 0


def test_api_metrics_exposition_shows_hot_path_updates_at_once() -> None:
    metrics = ApiMetrics()
    metrics.activations_by_code["VALID"].inc()
    metrics.activation_latency.observe(0.0007)
    metrics.script_latency.observe(0.0002)
    metrics.cache_hits.inc()
    metrics.count_response(200)
    text = generate_latest(metrics.registry).decode()
    assert 'activations_total{code="VALID"} 1.0' in text
    assert 'activation_duration_seconds_bucket{le="0.001"} 1.0' in text
    assert 'activation_duration_seconds_bucket{le="0.0005"} 0.0' in text
    assert 'redis_script_duration_seconds_bucket{le="0.00025"} 1.0' in text
    assert "license_cache_hits_total 1.0" in text
    assert 'api_responses_total{status_class="2xx"} 1.0' in text


async def test_fold_periodically_folds_without_a_collection() -> None:
    """In multiprocess mode the other processes' tallies reach the shared files this way."""
    plain = CollectorRegistry()  # read without folding: only what was folded shows
    tally = Tally(Counter("answers_total", "x", registry=plain))
    folding = FoldingRegistry()
    folding.fold_on_collect([tally])
    async with fold_periodically(folding, every=0.02):
        tally.inc()
        assert plain.get_sample_value("answers_total") == 0
        for _ in range(100):
            await asyncio.sleep(0.02)
            if plain.get_sample_value("answers_total") == 1:
                break
        assert plain.get_sample_value("answers_total") == 1
        tally.inc()
    assert plain.get_sample_value("answers_total") == 2  # folded once more at the end


def test_a_histogram_tally_folds_itself_when_many_are_pending() -> None:
    """Between scrapes of a busy single process, pending observations stay bounded."""
    registry = CollectorRegistry()  # read without folding: only what folded by itself shows
    tally = LatencyTally(Histogram("latency_seconds", "x", registry=registry))
    for _ in range(LatencyTally.FOLD_AT - 1):
        tally.observe(0.001)
    assert registry.get_sample_value("latency_seconds_count") == 0
    tally.observe(0.001)
    assert registry.get_sample_value("latency_seconds_count") == LatencyTally.FOLD_AT
