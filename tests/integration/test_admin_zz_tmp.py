import logging, time
from typing import Any
from tests.integration.helpers import create_customer

async def test_big(admin_client: Any, admin_headers: Any, caplog: Any, resources: Any) -> None:
    caplog.set_level(logging.INFO)
    cid = await create_customer(admin_client, admin_headers)
    lines = ["key,customer_id,product,kind,edition,purchased_on,addons"]
    for i in range(10000):
        k = f"{i:025d}"
        key = "-".join(k[j:j+5] for j in range(0, 25, 5))
        lines.append(f"{key},{cid},smartermail,perpetual,enterprise,2020-01-01,eas")
    t = time.perf_counter()
    r = await admin_client.post("/admin/v1/licenses/import", data="\n".join(lines).encode(), headers=admin_headers | {"Content-Type": "text/csv"})
    print(r.status, (await r.json())["imported"], time.perf_counter() - t)
    print([m for m in caplog.messages if "imported" in m][:3])
    big = await admin_client.post("/admin/v1/licenses", data=b"x" * (33 * 1024 * 1024), headers=admin_headers)
    print(big.status, big.content_type, await big.text())
