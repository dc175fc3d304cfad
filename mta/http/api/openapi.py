"""The OpenAPI 3.1 document: kept in the repository beside this module (openapi.json) and served
as it is at /openapi.json."""

from __future__ import annotations

from importlib import resources


def document() -> bytes:
    return resources.files("mta.http.api").joinpath("openapi.json").read_bytes()
