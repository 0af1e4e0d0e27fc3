"""Metric labels are closed sets (never a key, fingerprint or address), and the sets named in
metrics/ are exactly the domain's values."""

from __future__ import annotations

from activation.licensing.model import CaseStage, Code
from fraud.escalation import Step
from fraud.notify.model import OUTCOMES, Channel
from metrics import (
    CASE_STAGES,
    CHANNELS,
    CODES,
    ESCALATION_STEPS,
    NOTIFICATION_OUTCOMES,
    ApiMetrics,
    WorkerMetrics,
)

CLOSED_LABELS = {
    "code",
    "limit",
    "dependency",
    "status_class",
    "stage",
    "step",
    "channel",
    "outcome",
    "reason",
}


def test_label_sets_match_the_domain() -> None:
    assert set(CODES) == {code.value for code in Code}
    assert set(CASE_STAGES) == {stage.value for stage in CaseStage}
    assert set(ESCALATION_STEPS) == {step.value for step in Step}
    assert set(CHANNELS) == {channel.value for channel in Channel}
    assert set(NOTIFICATION_OUTCOMES) == set(OUTCOMES)


def test_labels_are_closed_sets_only() -> None:
    for metrics in (ApiMetrics(), WorkerMetrics()):
        for family in metrics.registry.collect():
            for sample in family.samples:
                assert set(sample.labels) - {"le"} <= CLOSED_LABELS, sample


def test_response_classes() -> None:
    metrics = ApiMetrics()
    for status in (200, 201, 400, 429, 503, 500, 99, 700):
        metrics.count_response(status)
    counts = {
        sample.labels["status_class"]: sample.value
        for family in metrics.registry.collect()
        if family.name == "api_responses"
        for sample in family.samples
        if sample.name == "api_responses_total"
    }
    assert counts == {"1xx": 1.0, "2xx": 2.0, "3xx": 0.0, "4xx": 2.0, "5xx": 3.0}
