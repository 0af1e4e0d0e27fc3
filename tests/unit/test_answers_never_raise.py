"""Property: every license the admin API can store, at any moment `now` may take, answers every
well-formed activation without an exception (SPEC §9: no 5xx; the rules R1–R10, R13, R14 and
the answer's JSON must cope with every combination of dates, kinds, locks and case states)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activation.api.answers import Answerer
from activation.api.parsing import ActivationBody
from activation.licensing.model import (
    KNOWN_ADDONS,
    MAX_SERVERS,
    MAX_TRIAL_DAYS,
    CaseStage,
    Edition,
    InstallationState,
    License,
    LicenseKind,
    LicenseStatus,
    Release,
    Version,
)
from activation.store.redis_store import Recorded

# The years the admin API accepts for dates and the test clock (admin/parsing.py).
days = st.dates(min_value=date(1970, 1, 1), max_value=date(2999, 12, 31))
moments = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)
)
versions = st.builds(
    Version,
    st.integers(0, 999_999),
    st.integers(0, 999_999),
    st.integers(0, 999_999_999),
)
addons = st.sampled_from(sorted(KNOWN_ADDONS))
licenses = st.builds(
    License,
    key=st.just("AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"),
    product=st.sampled_from(["smartermail", "smartertrack"]),
    kind=st.sampled_from(LicenseKind),
    edition=st.sampled_from(Edition),
    purchased_on=days,
    status=st.sampled_from(LicenseStatus),
    ms_covered_through=st.none() | days,
    lease_ends_on=st.none() | days,
    trial_days=st.integers(1, MAX_TRIAL_DAYS),
    failover=st.booleans(),
    max_servers=st.integers(1, MAX_SERVERS),
    major_version=st.none() | st.integers(0, 2**31 - 1),
    addons=st.frozensets(addons),
    auto_renew=st.booleans(),
)
installations = st.builds(
    InstallationState,
    st.integers(0, 20_000),
    st.integers(1, MAX_SERVERS),
    st.none() | moments,
    st.none() | st.sampled_from(CaseStage),
    st.none() | moments,
    st.none() | moments,
)
releases = st.lists(
    st.builds(Release, st.sampled_from(["smartermail", "smartertrack"]), versions, days),
    max_size=5,
)


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(
    license=st.none() | licenses,
    product=st.sampled_from(["smartermail", "smartertrack"]),
    version=versions,
    requested=st.lists(addons, max_size=4),
    state=installations,
    catalog=releases,
    now=moments,
    grace_days=st.integers(1, 365),
)
def test_every_storable_license_answers_without_an_exception(
    license: License | None,
    product: str,
    version: Version,
    requested: list[str],
    state: InstallationState,
    catalog: list[Release],
    now: datetime,
    grace_days: int,
) -> None:
    body = ActivationBody(
        "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE", "server-a", "mail.example.com", product, version,
        str(version), tuple(requested), "n1",
    )  # fmt: skip
    recorded = None if license is None else Recorded(license.to_json(), state, 1)
    answerer = Answerer(timedelta(days=grace_days), timedelta(days=7))
    mine = tuple(release for release in catalog if release.product == product)
    code, answer = answerer.answer(body, recorded, (1, mine), now)
    assert code in answer.decode()
