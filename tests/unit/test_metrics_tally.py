"""Tallies (metrics/tally.py) give exactly the numbers prometheus-client's own updates give."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, generate_latest

from metrics import ApiMetrics
from metrics.tally import FoldingRegistry, Tally, fold_periodically


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
