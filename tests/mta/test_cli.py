"""The operator's commands, run as real processes: check-config, queue stats/list/show/flush/
retry/delete/hold/release (against a running daemon and against a stopped one), user add."""

from __future__ import annotations

import asyncio
import json
import os

import aiosmtplib

from tests.mta.conftest import base_config, message, write_config
from tests.mta.proc import MtaProcess, run_cli
from tests.support.receiver import free_port
from tests.support.tomlw import dumps


def test_check_config_accepts_shipped_example():
    res = run_cli("check-config", "--config", "conf/mta.toml")
    assert res.returncode == 0, res.stderr
    assert "OK" in res.stdout


def test_check_config_names_the_bad_key(tmp_path):
    cases = [
        ({"submission": {"max_recipients": "many"}}, "submission.max_recipients"),
        ({"submission": {"listen": ["nowhere"]}}, "submission.listen[0]"),
        ({"delivery": {"prot": 25}}, "delivery.prot: unknown key"),
        ({"egress": {"sources": [{"name": "a", "address": "not-an-ip"}]}}, "egress.sources[0].address"),
        ({"egress": {"sources": [{"name": "a", "address": "127.0.0.11"}],
                     "pools": {"default": {"sources": ["b"]}}}}, "egress.pools.default.sources[0]"),
        ({"queue": {"max_age": "forever"}}, "queue.max_age"),
        ({"streams": {"bulk": {"pool": "nope"}}}, "streams.bulk.pool"),
    ]
    cases.append(({}, "mta.hostname: required"))          # an empty file is not a working config
    cases.append(({"mta": {"log_level": "chatty"}}, "mta.log_level"))
    for i, (doc, key) in enumerate(cases):
        path = os.path.join(tmp_path, f"bad{i}.toml")
        if doc:
            doc = {**doc, "mta": {"hostname": "mta.test.example", **doc.get("mta", {})}}
        with open(path, "w") as f:
            f.write(dumps(doc))
        res = run_cli("check-config", "--config", path)
        assert res.returncode != 0, doc
        assert key in res.stderr, (key, res.stderr)


def test_check_config_says_when_the_spool_cannot_be_written(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = write_config(str(tmp_path), {"mta": {"hostname": "mta.test.example", "spool_dir": str(blocker / "spool")}})
    res = run_cli("check-config", "--config", path)
    assert res.returncode == 2 and "mta.spool_dir" in res.stderr and "not a directory" in res.stderr


def test_check_config_reports_toml_syntax_errors(tmp_path):
    path = os.path.join(tmp_path, "broken.toml")
    with open(path, "w") as f:
        f.write("[mta\nhostname = 1\n")
    res = run_cli("check-config", "--config", path)
    assert res.returncode != 0 and "not valid TOML" in res.stderr


def test_queue_stats_on_a_fresh_spool(tmp_path):
    path = write_config(str(tmp_path), {"mta": {"hostname": "mta.test.example", "spool_dir": str(tmp_path / "spool")}})
    res = run_cli("queue", "stats", "--json", "--config", path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["messages"] == 0


async def _submit(host: str, port: int, rcpts: list[str]) -> str:
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False) as smtp:
        _errors, reply = await smtp.sendmail("a@sender.example", rcpts, message().encode())
    return reply.split("queued as ")[1].strip()


async def _stats_when(path: str, ready, timeout: float = 20.0) -> dict:
    """`queue stats --json` once `ready(stats)` holds (the daemon works at its own pace)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        stats = json.loads(run_cli("queue", "stats", "--json", "--config", path).stdout)
        if ready(stats) or asyncio.get_running_loop().time() > deadline:
            return stats
        await asyncio.sleep(0.2)


async def test_queue_commands_against_running_daemon_and_offline(tmp_path, world, dns_server, mx_port):
    dns_server.servfail("later.example")
    cfg = base_config(str(tmp_path), dns_server, mx_port, queue={"retry_base": 3600, "retry_max": 7200})
    path = write_config(str(tmp_path), cfg)
    host, port = cfg["submission"]["listen"][0].rsplit(":", 1)
    proc = MtaProcess(path, os.path.join(str(tmp_path), "mta.log")).start((host, int(port)))
    try:
        q1 = await _submit(host, int(port), ["u1@later.example", "u2@later.example"])
        q2 = await _submit(host, int(port), ["u3@later.example"])
        stats = await _stats_when(path, lambda st: st["deferred"] == 3)   # DNS fails: deferred for an hour
        assert stats["messages"] == 2 and stats["deferred"] == 3
        assert stats["sites"]["later.example"]["deferred"] == 3

        listing = json.loads(run_cli("queue", "list", "--json", "--config", path).stdout)
        assert [m["queue_id"] for m in listing] == [q1, q2]
        assert "4.4.3" in listing[0]["recipients"][0]["last_reply"]

        shown = run_cli("queue", "show", q1, "--config", path)
        assert shown.returncode == 0 and "u1@later.example" in shown.stdout and "Subject: test" in shown.stdout

        assert run_cli("queue", "hold", q2, "--config", path).returncode == 0
        stats = json.loads(run_cli("queue", "stats", "--json", "--config", path).stdout)
        assert stats["held"] == 1 and stats["active"] == 0
        deferred = json.loads(run_cli("queue", "list", "--deferred", "--json", "--config", path).stdout)
        assert [m["queue_id"] for m in deferred] == [q1]           # held is not deferred
        res = run_cli("queue", "retry", q2, "--config", path)
        assert res.returncode == 1 and "held" in res.stderr
        res = run_cli("queue", "hold", "NOSUCHID", q2, "--config", path)
        assert res.returncode == 1 and "NOSUCHID: no such message" in res.stderr

        # DNS is fixed; a retry of one message delivers it now, not in an hour.
        rx = world.domain("later.example")
        dns_server.behave_normally("later.example")
        await asyncio.sleep(5.5)     # the resolver remembers the failure for 5 s
        assert run_cli("queue", "retry", q1, "--config", path).returncode == 0
        await rx.await_for(1, timeout=20)
        assert sorted(rx.messages[0].rcpt_tos) == ["u1@later.example", "u2@later.example"]

        assert run_cli("queue", "release", q2, "--config", path).returncode == 0
        await rx.await_for(2, timeout=20)
        for _ in range(50):                        # the event log is written within a second or so
            shown = run_cli("queue", "show", q1, "--config", path)
            if "delivered" in shown.stdout:
                break
            await asyncio.sleep(0.2)
        assert "no longer queued" in shown.stdout and "delivered u1@later.example" in shown.stdout

        dns_server.servfail("gone.example")       # before the submission: it must wait, not bounce
        q3 = await _submit(host, int(port), ["u4@gone.example"])
        await _stats_when(path, lambda st: st["deferred"] == 1)
        res = run_cli("queue", "delete", q3, "--config", path)
        assert res.returncode == 0 and q3 in res.stdout
    finally:
        assert proc.terminate() == 0

    # With the daemon stopped the commands edit the spool directly.
    q_offline = json.loads(run_cli("queue", "list", "--json", "--config", path).stdout)
    assert q_offline == []            # nothing left
    res = run_cli("queue", "flush", "--config", path)
    assert res.returncode == 0 and json.loads(res.stdout) == {"rescheduled": 0}
    res = run_cli("queue", "delete", q3, "--config", path)
    assert res.returncode == 1 and "no such message" in res.stderr


async def test_metrics_endpoint_serves_prometheus_text(start_mta, world):
    world.domain("example.test")
    port = free_port(["127.0.0.1"])
    mta = await start_mta(metrics={"listen": f"127.0.0.1:{port}"})
    await mta.send("a@sender.example", ["u@example.test"], message())
    await mta.wait_event(lambda e: e["event"] == "delivered")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    data = (await reader.read()).decode()
    writer.close()
    assert data.startswith("HTTP/1.1 200")
    assert 'mta_recipient_events_total{event="delivered",reason="delivered"} 1.0' in data
    assert 'mta_accepted_messages_total{listener="submission"} 1.0' in data


def test_user_add_writes_a_verifiable_users_file(tmp_path):
    users = os.path.join(tmp_path, "users")
    res = run_cli("user", "add", "--users-file", users, "app", "--tenant", "acme", input="pw123\n")
    assert res.returncode == 0, res.stderr
    from mta.submission.auth import Authenticator, load_users

    loaded = load_users(users)
    assert loaded["app"].tenant == "acme"
    assert Authenticator(loaded).check("app", "pw123") is not None
    assert Authenticator(loaded).check("app", "nope") is None


def test_both_commands_tell_their_version():
    import subprocess
    import sys

    from tests.mta.proc import REPO
    for module, prog in (("mta.cli", "mta"), ("policy.cli", "policyd")):
        res = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, cwd=REPO)
        assert res.returncode == 0 and res.stdout.startswith(f"{prog} ")
