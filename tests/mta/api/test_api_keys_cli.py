"""`mta api-key create|list|revoke`: the key is printed once, as the last line; only its hash is
on disk; a key made by the CLI works against the running daemon and stops working when revoked."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pathlib

import aiohttp

from mta.cli.main import main
from tests.mta.api.conftest import simple


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_create_list_revoke(start_api, world, capsys):
    world.domain("example.test")
    api = await start_api()
    config = api.mta.config_path
    code, out, _err = run(capsys, "api-key", "create", "--config", config, "--tenant", "shop", "--name", "shop-app")
    assert code == 0
    key = out.strip().splitlines()[-1]
    assert key.startswith("mta_") and len(key) > 40
    # Only the hash is on disk, in no file of the spool directory is the key itself.
    digest = hashlib.sha256(key.encode()).hexdigest().encode()
    files = [p for p in glob.glob(os.path.join(api.mta.spool_dir, "**"), recursive=True) if os.path.isfile(p)]
    contents = b"".join(pathlib.Path(p).read_bytes() for p in files)
    assert key.encode() not in contents
    assert digest in contents
    code, out, _err = run(capsys, "api-key", "list", "--config", config, "--json")
    listed = [json.loads(line) for line in out.splitlines()]
    shop = next(k for k in listed if k["name"] == "shop-app")
    assert shop["tenant"] == "shop" and shop["operator"] is False and "key" not in shop
    assert key not in out
    # The new key works at once against the running daemon, for its tenant.
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as s:
        async with s.post(api.base + "/v1/messages", json=simple()) as resp:
            assert resp.status == 202
            qid = (await resp.json())["id"]
        async with s.get(api.base + f"/v1/messages/{qid}") as resp:
            assert (await resp.json())["tenant"] == "shop"
        code, out, _err = run(capsys, "api-key", "revoke", "--config", config, shop["id"])
        assert code == 0
        async with s.post(api.base + "/v1/messages", json=simple()) as resp:
            assert resp.status == 401
    code, _out, err = run(capsys, "api-key", "revoke", "--config", config, "shop-app")
    assert code == 1 and "no API key" in err


def test_create_needs_a_tenant_or_operator_and_names_are_unique(tmp_path, capsys):
    config = tmp_path / "mta.toml"
    config.write_text(f'[mta]\nhostname = "mta.test.example"\nspool_dir = "{tmp_path / "spool"}"\n')
    code, _out, err = run(capsys, "api-key", "create", "--config", str(config))
    assert code == 2 and "--tenant" in err
    code, out, _err = run(capsys, "api-key", "create", "--config", str(config), "--operator", "--name", "console")
    assert code == 0 and "operator" in out
    code, _out, err = run(capsys, "api-key", "create", "--config", str(config), "--operator", "--name", "console")
    assert code == 1 and "exists" in err
    code, out, _err = run(capsys, "api-key", "list", "--config", str(config))
    assert "console" in out and "yes" in out
