"""Every metric the project exports, named in one place (SPEC §8).

Labels carry only closed sets (decision codes, limit kinds, outcomes): never a license key,
a fingerprint or an address.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass
class ApiMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.activations = Counter(
            "activations_total",
            "Activation answers by decision code.",
            ["code"],
            registry=self.registry,
        )
        self.activation_latency = Histogram(
            "activation_duration_seconds",
            "Time to answer POST /v1/activations.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.script_latency = Histogram(
            "redis_script_duration_seconds",
            "Time of the activation script round trip to Redis.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "rate_limited_total",
            "Requests refused with 429, by the limit that refused them.",
            ["limit"],
            registry=self.registry,
        )
        self.cache_misses = Counter(
            "license_cache_misses_total",
            "Activations that had to load the license from PostgreSQL.",
            registry=self.registry,
        )
        self.dependency_errors = Counter(
            "dependency_unavailable_total",
            "Requests answered 503 because a dependency was unreachable.",
            ["dependency"],
            registry=self.registry,
        )


@dataclass
class WorkerMetrics:
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
        self.stream_lag = Gauge(
            "stream_lag_entries",
            "Entries in the activation streams not yet delivered to the ingest group.",
            registry=self.registry,
        )
        self.stream_pending = Gauge(
            "stream_pending_entries",
            "Entries delivered to a worker but not yet acknowledged.",
            registry=self.registry,
        )
        self.cases = Gauge(
            "cases",
            "Fraud cases by stage (open cases, and resolved ones).",
            ["stage"],
            registry=self.registry,
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
            "Notification send attempts by channel and outcome (sent, retry, dead).",
            ["channel", "outcome"],
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
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0),
            registry=self.registry,
        )
