"""HTTP messages go through the same acceptance as SMTP ones: DKIM-signed once, with the key of
their From domain, and the signature verifies at the receiver."""

from __future__ import annotations

import os

from tests.compliance.verifiers import dkimpy_results
from tests.mta.api.conftest import simple
from tests.mta.test_compliance_e2e import publish, write_key


async def test_http_messages_are_dkim_signed(start_api, world, dns_server, tmp_path):
    rx = world.domain("example.test")
    key_path = os.path.join(tmp_path, "sender.example.s1.key")
    write_key(key_path)
    records = publish(dns_server, key_path, "sender.example", "s1")
    api = await start_api(dkim={"keys": [{"domain": "sender.example", "selector": "s1", "key_file": key_path}]})
    await api.send(simple(html="<p>Hello <b>there</b></p>", subject="Signed é"))
    got = (await rx.await_for(1))[0].data
    assert got.startswith(b"DKIM-Signature: ") and b"d=sender.example" in got.split(b"\r\n\r\n", 1)[0]
    assert dkimpy_results(got, records) == [True]
