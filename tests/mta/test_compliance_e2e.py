"""DKIM signing at acceptance and one-click unsubscribe, through the running MTA."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib

import aiosmtplib
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mta.compliance.dkim.config import DkimKeyConfig
from mta.compliance.dkim.keys import dns_record_name, dns_record_value, load_key
from tests.compliance.verifiers import dkimpy_results, mail_dkim_results
from tests.mta.conftest import base_config, message, write_config
from tests.mta.proc import MtaProcess
from tests.support.receiver import free_port


def write_key(path: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(path, 0o600)


def publish(dns_server, path: str, domain: str, selector: str) -> dict[str, str]:
    key, _warnings = load_key(DkimKeyConfig(domain, selector, path), "test")
    name, value = dns_record_name(domain, selector), dns_record_value(key.private_key)
    dns_server.txt(name, value)
    return {name: value}



async def http(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def test_marketing_mail_is_signed_with_one_click_unsubscribe(start_mta, world, dns_server, tmp_path):
    rx = world.domain("example.test")
    key_path = os.path.join(tmp_path, "sender.example.s1.key")
    write_key(key_path)
    records = publish(dns_server, key_path, "sender.example", "s1")
    http_port = free_port(["127.0.0.1"])
    mta = await start_mta(dkim={"keys": [{"domain": "sender.example", "selector": "s1", "key_file": key_path}]},
                          unsubscribe={"enabled": True, "https_base": f"http://127.0.0.1:{http_port}",
                                       "listen": f"127.0.0.1:{http_port}"})
    await mta.send("news@sender.example", ["reader@example.test"],
                   message(sender="news@sender.example", to="reader@example.test",
                           extra_headers="X-Stream: marketing\r\n"))
    got = (await rx.await_for(1))[0].data
    head = got.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"DKIM-Signature: ")
    assert b"List-Unsubscribe: <http://127.0.0.1:" in head and b"<mailto:unsub-" in head
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in head
    assert dkimpy_results(got, records) == [True]
    assert mail_dkim_results(got, dns_server) == ["pass"]        # an independent verifier agrees
    url = head.split(b"List-Unsubscribe: <", 1)[1].split(b">", 1)[0].decode()
    path = url.split(str(http_port), 1)[1]

    # A link scanner's GET changes nothing; a forged token gets a 400; the one-click POST works.
    assert (await http(http_port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())).startswith(b"HTTP/1.1 200")
    bad = path[:-4] + ("aaaa" if not path.endswith("aaaa") else "bbbb")
    body = b"List-Unsubscribe=One-Click"
    post = (f"POST {{}} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    assert (await http(http_port, post.replace(b"{}", bad.encode()) + body)).startswith(b"HTTP/1.1 400")
    await mta.daemon.scheduler.gate.sync()     # what the housekeeping does every 2 s, done now: had the
    # scanner's GET or the forged POST suppressed the reader, the next message would be dropped
    await mta.send("news@sender.example", ["reader@example.test"], message(extra_headers="X-Stream: marketing\r\n"))
    await rx.await_for(2)                                         # not suppressed yet
    assert (await http(http_port, post.replace(b"{}", path.encode()) + body)).startswith(b"HTTP/1.1 200")
    await mta.wait_event(lambda e: e["event"] == "unsubscribed")
    await mta.send("news@sender.example", ["reader@example.test"], message(extra_headers="X-Stream: marketing\r\n"))
    dropped = (await mta.wait_event(lambda e: e["event"] == "dropped"))[0]
    assert dropped["reason"] == "unsubscribe" and rx.count() == 2


async def test_transactional_mail_gets_no_unsubscribe_headers(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta(unsubscribe={"enabled": True})
    await mta.send("app@sender.example", ["u@example.test"], message(extra_headers="X-Stream: transactional\r\n"))
    head = (await rx.await_for(1))[0].data.split(b"\r\n\r\n", 1)[0]
    assert b"List-Unsubscribe" not in head and b"DKIM-Signature" not in head   # no key configured


async def test_mailto_unsubscribe_through_the_inbound_listener(start_mta, world):
    rx = world.domain("example.test")
    mta = await start_mta(unsubscribe={"enabled": True})           # mailto at the bounce domain
    await mta.send("news@sender.example", ["reader@example.test"], message(extra_headers="X-Stream: marketing\r\n"))
    head = (await rx.await_for(1))[0].data.split(b"\r\n\r\n", 1)[0]
    mailto = head.split(b"<mailto:", 1)[1].split(b">", 1)[0].decode()
    assert mailto.endswith("@bounces.test.example")
    host, port = mta.daemon.cfg.inbound.listen[0].rsplit(":", 1)
    async with aiosmtplib.SMTP(hostname=host, port=int(port), start_tls=False) as smtp:
        await smtp.sendmail("reader@example.test", [mailto], b"Subject: unsubscribe\r\n\r\n\r\n")
        forged = mailto.replace("unsub-", "unsub-x")
        refused = await smtp.sendmail("reader@example.test", [forged, mailto], b"Subject: x\r\n\r\n\r\n")
        assert forged in refused[0]
    await mta.wait_event(lambda e: e["event"] == "unsubscribed")


def test_dkim_keys_reload_on_sighup(tmp_path, dns_server, mx_port, world):
    rx = world.domain("example.test")
    key1, key2 = os.path.join(tmp_path, "k1.key"), os.path.join(tmp_path, "k2.key")
    write_key(key1)
    write_key(key2)
    records = {**publish(dns_server, key1, "sender.example", "s1"), **publish(dns_server, key2, "sender.example", "s2")}
    cfg = base_config(str(tmp_path), dns_server, mx_port,
                      dkim={"keys": [{"domain": "sender.example", "selector": "s1", "key_file": key1}]})
    path = write_config(str(tmp_path), cfg)
    host, port = cfg["submission"]["listen"][0].rsplit(":", 1)
    proc = MtaProcess(path, os.path.join(tmp_path, "mta.log")).start((host, int(port)))
    try:
        def send() -> None:
            with smtplib.SMTP(host, int(port), timeout=30) as smtp:
                smtp.sendmail("a@sender.example", ["u@example.test"],
                              b"From: <a@sender.example>\r\nSubject: r\r\n\r\nhi\r\n")

        send()
        first = rx.wait_for(1)[0].data
        assert b"s=s1;" in first and dkimpy_results(first, records) == [True]
        # Rotation: add the second selector and reload; both keys sign while DNS catches up.
        cfg["dkim"]["keys"].append({"domain": "sender.example", "selector": "s2", "key_file": key2})
        write_config(str(tmp_path), cfg)
        logged = proc.log_size()
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_log("SIGHUP: DKIM keys reloaded", after=logged)
        send()
        second = rx.wait_for(2)[1].data
        assert b"s=s1;" in second and b"s=s2;" in second
        assert dkimpy_results(second, records) == [True, True]
    finally:
        assert proc.terminate() == 0
