"""Customer e-mail templates (plain text, Jinja2 with StrictUndefined: a missing variable is an
error, never an empty string). The payload of an outbox row is the template's variables.

Required payload fields per template (dates as ISO-8601 strings, as JSON carries them):
- ``grace_over``  (R14 day 30): license_key, servers_active, servers_allowed, grace_ends_at,
  disable_at
- ``reminder``    (R14 day 37): license_key, servers_active, servers_allowed, disable_at
- ``disabled``    (R14 day 44): license_key
- ``ms_reminder`` (R6): license_key, ms_covered_through, days_left
- ``ms_lapsed``   (R6, the day it lapses): license_key, ms_covered_through
Optional everywhere: ``customer_name`` (the greeting); in the M&S templates ``product``.
Other payload fields are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import jinja2


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str


def human_time(value: object) -> str:
    """ISO-8601 to words: `2026-12-01T12:00:00+00:00` → `1 December 2026, 12:00 UTC`,
    `2027-08-31` → `31 August 2027`; anything else unchanged."""
    text = str(value)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return f"{day.day} {day:%B %Y}"
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    zone = moment.tzname() or ""
    zone = "UTC" if zone in {"UTC", "UTC+00:00"} else zone
    return f"{moment.day} {moment:%B %Y, %H:%M} {zone}".rstrip()


_GREETING = "Hello{% if customer_name is defined %} {{ customer_name }}{% endif %},\n\n"
_PRODUCT = "{% if product is defined %} ({{ product }}){% endif %}"
_SIGNATURE = "\n\n-- \nLicensing team\n"

_SOURCES: dict[str, tuple[str, str]] = {
    "grace_over": (
        "Action needed: license {{ license_key }} runs on too many servers",
        "Your license key {{ license_key }} is active on {{ servers_active }} servers, but it "
        "allows {{ servers_allowed }}. The migration grace period ended on "
        "{{ grace_ends_at | when }}.\n\nThe key will be disabled on {{ disable_at | when }} "
        "unless the number of servers using it is reduced to {{ servers_allowed }}. "
        "Deactivate the key on servers you no longer use, or contact us if you need more servers.",
    ),
    "reminder": (
        "Reminder: license {{ license_key }} will be disabled on {{ disable_at | when }}",
        "This is a reminder that your license key {{ license_key }} is still active on "
        "{{ servers_active }} servers, but it allows {{ servers_allowed }}.\n\nThe key will be "
        "disabled on {{ disable_at | when }} unless the number of servers using it is reduced "
        "to {{ servers_allowed }}.",
    ),
    "disabled": (
        "License {{ license_key }} has been disabled",
        "Your license key {{ license_key }} has been disabled because it remained in use on "
        "more servers than it allows; the key is assumed to be compromised.\n\nPlease contact "
        "our support team to restore your license.",
    ),
    "ms_reminder": (
        "Maintenance and support for license {{ license_key }} ends on "
        "{{ ms_covered_through | when }}",
        "Maintenance and support for license {{ license_key }}" + _PRODUCT + " ends on "
        "{{ ms_covered_through | when }}: {{ days_left }} day{{ '' if days_left == 1 else 's' }} "
        "left.\n\nRenew before then to keep receiving updates and add-ons without a gap: a "
        "renewal costs 50% of the new product price and extends coverage by 12 months from "
        "the current end date. Reply to this e-mail or ask your reseller to renew.",
    ),
    "ms_lapsed": (
        "Maintenance and support for license {{ license_key }} has lapsed",
        "Maintenance and support for license {{ license_key }}" + _PRODUCT + " was covered "
        "through {{ ms_covered_through | when }} and has now lapsed. Your license keeps working "
        "with builds released up to that day; paid add-ons are no longer included.\n\nYou can "
        "reinstate maintenance and support at 80% of the new product price; coverage then "
        "runs 12 months from the reinstatement date. Reply to this e-mail to reinstate.",
    ),
}

_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # plain text only; an HTML part would need autoescape=True
    keep_trailing_newline=True,
)
_ENV.filters["when"] = human_time

_COMPILED: dict[str, tuple[jinja2.Template, jinja2.Template]] = {
    name: (_ENV.from_string(subject), _ENV.from_string(_GREETING + body + _SIGNATURE))
    for name, (subject, body) in _SOURCES.items()
}

TEMPLATES: frozenset[str] = frozenset(_SOURCES)


def render(template: str, payload: Mapping[str, Any]) -> RenderedEmail:
    """Raise `KeyError` for an unknown template, `jinja2.UndefinedError` for a missing field."""
    subject, body = _COMPILED[template]
    return RenderedEmail(
        subject=" ".join(subject.render(payload).split()), text=body.render(payload)
    )
