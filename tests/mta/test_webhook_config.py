"""`[[webhooks]]` and the `[events]` Redis keys: defaults, and errors that name the bad key."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from mta.config import ConfigError, load_config
from tests.support.tomlw import dumps

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


def load(tmp_path: Path, **extra: Any):  # type: ignore[no-untyped-def]
    cfg = {"mta": {"hostname": "mta.test.example", "spool_dir": str(tmp_path / "spool")}, **extra}
    path = tmp_path / "mta.toml"
    path.write_text(dumps(cfg))
    return load_config(str(path))


def test_defaults_and_the_default_name(tmp_path: Path) -> None:
    cfg = load(tmp_path, webhooks=[{"url": "https://user:pw@app.example.test/hooks/mail?token=x", "secret": SECRET}],
               events={"redis": "redis://127.0.0.1:6379/0"})
    [ep] = cfg.webhooks
    assert ep.name == "https://app.example.test/hooks/mail"        # no credentials, no query in labels
    assert (ep.tenant, ep.events, ep.batch_size, ep.max_age, ep.timeout) == ("", [], 100, 86400.0, 15.0)
    assert cfg.events.redis_stream == "warmup-mta:events" and cfg.events.redis_maxlen == 1_000_000
    assert load(tmp_path).webhooks == [] and load(tmp_path).events.redis == ""


@pytest.mark.parametrize("hooks, events, key", [
    ([{"url": "ftp://x.example/", "secret": SECRET}], {}, "webhooks[0].url"),
    ([{"url": "https:///path", "secret": SECRET}], {}, "webhooks[0].url"),
    ([{"url": "https://a.example/", "secret": "s3cret"}], {}, "webhooks[0].secret"),
    ([{"url": "https://a.example/", "secret": "whsec_" + base64.b64encode(b"s" * 8).decode()}], {},
     "webhooks[0].secret"),
    ([{"url": "https://a.example/", "secret": SECRET, "events": ["Delivered!"]}], {}, "webhooks[0].events[0]"),
    ([{"url": "https://a.example/", "secret": SECRET}, {"url": "https://a.example/", "secret": SECRET}], {},
     "webhooks[1].name"),
    ([{"url": "https://a.example/", "secret": SECRET, "batch_size": 0}], {}, "webhooks[0].batch_size"),
    ([{"url": "https://a.example/", "secret": SECRET, "retry_base": "1h", "retry_max": "1m"}], {},
     "webhooks[0].retry_max"),
    ([{"url": "https://a.example/", "secret": SECRET, "max_age": 0}], {}, "webhooks[0].max_age"),
    ([{"url": "https://a.example/", "secret": SECRET, "colour": "red"}], {}, "webhooks[0].colour"),
    ([{"secret": SECRET}], {}, "webhooks[0].url"),
    ([], {"redis": "http://127.0.0.1:6379"}, "events.redis"),
    ([], {"redis": "redis://127.0.0.1:6379", "redis_maxlen": 0}, "events.redis_maxlen"),
    ([], {"redis": "redis://127.0.0.1:6379", "redis_stream": " "}, "events.redis_stream"),
])
def test_bad_values_name_their_key(tmp_path: Path, hooks: list[dict[str, Any]], events: dict[str, Any],
                                   key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, webhooks=hooks, events=events)
    assert str(err.value).startswith(key + ":"), str(err.value)


def test_two_endpoints_on_one_url_work_with_names(tmp_path: Path) -> None:
    cfg = load(tmp_path, webhooks=[{"url": "https://a.example/h", "secret": SECRET, "tenant": "t1", "name": "t1"},
                                   {"url": "https://a.example/h", "secret": SECRET, "tenant": "t2", "name": "t2"}])
    assert [ep.name for ep in cfg.webhooks] == ["t1", "t2"]
