"""Every metric the project exports, named in one place (SPEC §8).

Labels carry only closed sets, listed below (decision codes, limit kinds, stages, channels,
outcomes, reasons): never a license key, a fingerprint or an address. Every label value of a
closed set is created at zero when the metrics are built, so `rate()` and the dashboard see a
series before its first event.

Two modes, one design:

- one process: every `ApiMetrics`/`WorkerMetrics` owns a `CollectorRegistry` and `exposition()`
  renders it;
- `activation-server --processes N`: the parent sets `PROMETHEUS_MULTIPROC_DIR` (a fresh
  directory) before it spawns the children, so prometheus-client keeps every value in per-process
  files there; `exposition()` then ignores the per-object registry and renders a fresh
  `MultiProcessCollector` over the directory, i.e. the sum over all processes, whichever process
  answers the scrape. Counters and histograms of a child that exited stay in the sum (they must:
  a counter never goes down); `mark_dead(pid)` drops its live gauges.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as _multiprocess

from metrics.tally import FoldingRegistry, Tally

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
SCRIPT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 1.0)
PASS_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)

# Closed label sets (tests/unit/test_metrics_labels.py checks them against the domain enums).
CODES = (
    "VALID",
    "GRACE",
    "OVERDUE",
    "DISABLED",
    "EXPIRED",
    "BUILD_NOT_ELIGIBLE",
    "PRODUCT_MISMATCH",
    "NOT_FOUND",
)
RATE_LIMITS = ("ip", "key", "unknown")
DEPENDENCIES = ("redis", "postgresql")
STATUS_CLASSES = (1, 2, 3, 4, 5)  # api_responses_total{status_class="2xx"}, ...
CASE_STAGES = ("grace", "overdue", "disabled", "resolved")
ESCALATION_STEPS = ("grace_over", "reminder", "disable")
CHANNELS = ("email", "webhook")
NOTIFICATION_OUTCOMES = ("sent", "retried", "dead")
DISABLE_REASONS = ("fraud_escalation",)


def multiprocess_dir() -> str | None:
    """The shared metrics directory when this process runs in multiprocess mode."""
    return os.environ.get(MULTIPROC_ENV) or None


def exposition(registry: CollectorRegistry) -> bytes:
    """The text a `/metrics` scrape answers: this registry, or in multiprocess mode the sum
    of every process's files (a new registry per scrape, as the client's docs require)."""
    path = multiprocess_dir()
    if path is None:
        return generate_latest(registry)
    if isinstance(registry, FoldingRegistry):
        registry.fold()  # this process's own updates, up to now, are in its files
    merged = CollectorRegistry()
    _multiprocess.MultiProcessCollector(merged, path=path)  # type: ignore[no-untyped-call]
    return generate_latest(merged)


def mark_dead(pid: int) -> None:
    """Bookkeeping for a child that exited (multiprocess mode): drop its live gauges."""
    path = multiprocess_dir()
    if path is not None:
        _multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


@dataclass
class ApiMetrics:
    """The activation API process (public and admin apps). What the activation path updates on
    every request (answers by code, both latencies, cache hits and misses, responses by status
    class) is a tally (metrics/tally.py) folded into the metric on collection; the rest is
    prometheus-client's objects, updated directly."""

    registry: FoldingRegistry = field(default_factory=FoldingRegistry)

    def __post_init__(self) -> None:
        self.activations = Counter(
            "activations_total",
            "Activation answers by decision code.",
            ["code"],
            registry=self.registry,
        )
        self.activation_latency = Histogram(
            "activation_duration_seconds",
            "Time to answer POST /v1/activations (parse, Redis, decision, signature).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.script_latency = Histogram(
            "redis_script_duration_seconds",
            "Time of the activation store call: one script round trip to Redis (two, plus a "
            "PostgreSQL read, on a license cache miss).",
            buckets=SCRIPT_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "rate_limited_total",
            "Requests refused with 429, by the limit that refused them.",
            ["limit"],
            registry=self.registry,
        )
        cache_hits = Counter(
            "license_cache_hits_total",
            "Activation store calls answered from the Redis license cache (or its negative "
            "cache of unknown keys).",
            registry=self.registry,
        )
        cache_misses = Counter(
            "license_cache_misses_total",
            "Activation store calls that had to load the license from PostgreSQL.",
            registry=self.registry,
        )
        self.responses = Counter(
            "api_responses_total",
            "Answers of the public API by status class (2xx, 4xx, 5xx; 429 and 503 are also "
            "counted by rate_limited_total and dependency_unavailable_total).",
            ["status_class"],
            registry=self.registry,
        )
        self._by_class = {n: Tally(self.responses.labels(f"{n}xx")) for n in STATUS_CLASSES}
        self.activations_shed = Counter(
            "activations_shed_total",
            "Activations answered 503 with Retry-After before their body was read (also "
            "counted as 5xx in api_responses_total), by reason: `inflight` (the process already "
            "had MAX_INFLIGHT activations in progress) or `queued` (the request waited longer "
            "than MAX_QUEUE_DELAY_MS in the process before its turn).",
            ["reason"],
            registry=self.registry,
        )
        self.dependency_errors = Counter(
            "dependency_unavailable_total",
            "Requests answered 503 because a dependency was unreachable.",
            ["dependency"],
            registry=self.registry,
        )
        # Children bound once: the hot path increments without a labels() lookup.
        self.activations_by_code = {code: Tally(self.activations.labels(code)) for code in CODES}
        self.cache_hits = Tally(cache_hits)
        self.cache_misses = Tally(cache_misses)
        # Tallies: under overload most answers are these.
        self.shed_inflight = Tally(self.activations_shed.labels("inflight"))
        self.shed_queued = Tally(self.activations_shed.labels("queued"))
        self.registry.fold_on_collect(
            [
                *self.activations_by_code.values(),
                self.cache_hits,
                self.cache_misses,
                self.shed_inflight,
                self.shed_queued,
                *self._by_class.values(),
            ]
        )
        for limit in RATE_LIMITS:
            self.rate_limited.labels(limit)
        for dependency in DEPENDENCIES:
            self.dependency_errors.labels(dependency)

    def count_response(self, status: int) -> None:
        self._by_class[min(max(status // 100, 1), 5)].inc()


@dataclass
class WorkerMetrics:
    """The fraud worker. Its gauges describe shared state (Redis streams, PostgreSQL cases),
    so in multiprocess mode the most recent value written by any process is the answer."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.events_ingested = Counter(
            "events_ingested_total",
            "Activation events written to PostgreSQL (replays of stored events not counted).",
            registry=self.registry,
        )
        self.events_reclaimed = Counter(
            "events_reclaimed_total",
            "Stream entries reclaimed from consumers that stopped before acknowledging.",
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "dead_letters_total",
            "Stream entries that could not be stored and went to dead_letters.",
            registry=self.registry,
        )
        self.stream_resets = Counter(
            "stream_resets_total",
            "Activation streams whose ingest consumer group had vanished (Redis restarted "
            "without its data) and was created again: entries not yet ingested were lost.",
            registry=self.registry,
        )
        self.stream_length = Gauge(
            "stream_length_entries",
            "Entries held in the activation streams (XLEN summed over the stream shards).",
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.stream_lag = Gauge(
            "stream_lag_entries",
            "Entries in the activation streams not yet delivered to the ingest group.",
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.stream_pending = Gauge(
            "stream_pending_entries",
            "Entries delivered to a worker but not yet acknowledged.",
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.cases = Gauge(
            "cases",
            "Fraud cases by stage (open cases, and resolved ones).",
            ["stage"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.cases_opened = Counter(
            "cases_opened_total", "Fraud cases opened.", registry=self.registry
        )
        self.escalation_steps = Counter(
            "escalation_steps_total",
            "Escalation steps run, by step.",
            ["step"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "notifications_total",
            "Notification send attempts by channel and outcome (sent, retried, dead).",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.notifications_resent = Counter(
            "notifications_resent_total",
            "Notifications sent again after an earlier attempt ended without a record (the "
            "worker died or lost PostgreSQL mid-send): the receiver may have it twice, under "
            "the same Message-ID / webhook-id.",
            ["channel"],
            registry=self.registry,
        )
        self.pass_failures = Counter(
            "worker_pass_failures_total",
            "Worker passes that failed (an outage of Redis or PostgreSQL) and were retried.",
            registry=self.registry,
        )
        self.keys_disabled = Counter(
            "keys_disabled_total",
            "License keys disabled, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.ms_reminders = Counter(
            "ms_reminders_total", "M&S reminder e-mails queued.", registry=self.registry
        )
        self.pass_duration = Histogram(
            "worker_pass_duration_seconds",
            "Time of one worker pass (ingest, cases, outbox, M&S duties).",
            buckets=PASS_BUCKETS,
            registry=self.registry,
        )
        self.last_pass = Gauge(
            "worker_last_pass_timestamp_seconds",
            "Unix time at which the last worker pass finished (staleness: worker down).",
            registry=self.registry,
            multiprocess_mode="max",
        )
        for stage in CASE_STAGES:
            self.cases.labels(stage)
        for step in ESCALATION_STEPS:
            self.escalation_steps.labels(step)
        for channel in CHANNELS:
            for outcome in NOTIFICATION_OUTCOMES:
                self.notifications.labels(channel, outcome)
            self.notifications_resent.labels(channel)
        for reason in DISABLE_REASONS:
            self.keys_disabled.labels(reason)


def metric_names() -> frozenset[str]:
    """Every sample name the code can export (counters with and without `_total`, histograms
    with `_bucket`, `_sum`, `_count`): what the dashboard and the rules may use."""
    names: set[str] = set()
    for metrics in (ApiMetrics(), WorkerMetrics()):
        for family in metrics.registry.collect():
            if family.type == "counter":
                names.update({f"{family.name}_total", f"{family.name}_created"})
            elif family.type == "histogram":
                names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
                names.add(f"{family.name}_created")
            else:
                names.add(family.name)
    return frozenset(names)
