"""Customer routes: create, and read with the customer's licenses."""

from __future__ import annotations

from aiohttp import web

from activation.admin import audit
from activation.admin import parsing as p
from activation.admin.auth import actor, requires
from activation.admin.license_common import license_json
from activation.admin.state import Role, now, render, resources_of, today
from activation.store import admin_store
from activation.web.problems import ProblemError, bad_field

routes = web.RouteTableDef()

# Characters a bare address (no display name, no list, no quoting) never holds; whitespace and
# control characters would also let a value carry a second header line into the e-mail's `To`.
_NOT_IN_ADDRESS = frozenset('<>,;:"()[]\\')


def is_mail_address(text: str) -> bool:
    """One bare address `local@domain`: what the M&S and fraud e-mails are sent to."""
    local, at, domain = text.rpartition("@")
    return bool(
        local
        and at
        and domain
        and "@" not in local
        and text.isprintable()
        and not any(c.isspace() or c in _NOT_IN_ADDRESS for c in text)
    )


@routes.post("/admin/v1/customers")
@requires(Role.ADMIN)
async def create_customer(request: web.Request) -> web.Response:
    body = await p.json_body(request)
    name, email = p.text(body, "name"), p.text(body, "email", max_len=254)
    if not is_mail_address(email):
        raise bad_field("email", "must be one e-mail address, like ops@example.com")
    phone = p.opt_text(body, "phone", max_len=50)
    at = await now(request)
    async with resources_of(request).pool.acquire() as conn, conn.transaction():
        customer = await admin_store.insert_customer(conn, name, email, phone)
        target = f"customer:{customer['id']}"
        await audit.record(
            conn, at=at, actor=actor(request), action="customer.create", target=target,
            after=customer,
        )  # fmt: skip
    return render(customer, 201)


@routes.get("/admin/v1/customers/{id}")
@requires(Role.VIEWER)
async def get_customer(request: web.Request) -> web.Response:
    customer_id = p.path_id(request, "customer")
    async with resources_of(request).pool.acquire() as conn:
        customer = await admin_store.fetch_customer(conn, customer_id)
        records = await admin_store.customer_licenses(conn, customer_id)
    if customer is None:
        raise ProblemError(404, f"no customer {customer_id}")
    on = await today(request)
    return render(customer | {"licenses": [license_json(r, on) for r in records]})
