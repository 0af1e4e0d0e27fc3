"""Every metric the project exports, named in one place (SPEC §8).

Labels carry only closed sets (decision codes, limit kinds, outcomes): never a license key,
a fingerprint or an address.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram

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
