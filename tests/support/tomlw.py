"""A small TOML writer for test configs: tables, arrays of tables, scalars and lists."""

from __future__ import annotations

import json
from typing import Any


def dumps(doc: dict[str, Any]) -> str:
    out: list[str] = []

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__}")

    def is_table_list(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    def table(prefix: str, tbl: dict[str, Any]) -> None:
        simple = {k: v for k, v in tbl.items() if not isinstance(v, dict) and not is_table_list(v)}
        if prefix and (simple or not tbl):
            out.append(f"\n[{prefix}]")
        for k, v in simple.items():
            out.append(f"{json.dumps(k)} = {scalar(v)}")
        for k, v in tbl.items():
            name = f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k)
            if isinstance(v, dict):
                table(name, v)
            elif is_table_list(v):
                for item in v:
                    out.append(f"\n[[{name}]]")
                    for ik, iv in item.items():
                        out.append(f"{json.dumps(ik)} = {scalar(iv)}")

    table("", doc)
    return "\n".join(out).lstrip("\n") + "\n"


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base
