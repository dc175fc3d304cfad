"""The packages stack (README, "Architecture"): each imports only what lies below it.

    mta            bounce_parser, warmup_base   (not policy: the policy client is in the base)
    policy         bounce_parser, warmup_base   (not mta)
    bounce_parser  warmup_base
    warmup_base    nothing of the project

Every import statement of every module counts, wherever it stands (inside a function, under
TYPE_CHECKING), since each one is a dependency a reader has to follow. Within a package, the
shells (the command line and the daemon) are imported by nothing but the shells.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

MAY_IMPORT = {
    "warmup_base": set(),
    "bounce_parser": {"warmup_base"},
    "policy": {"warmup_base", "bounce_parser"},
    "mta": {"warmup_base", "bounce_parser"},
}

SHELLS = ("mta.cli", "mta.daemon", "policy.cli", "policy.daemon")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> list[tuple[str, Path]]:
    found = [(module_name(p), p) for package in MAY_IMPORT for p in sorted((ROOT / package).rglob("*.py"))]
    return found


def imports(name: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from mta import cli` imports mta.cli: a name may be a module, so count it as one
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def is_within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_every_package_is_seen() -> None:
    names = {name for name, _path in modules()}
    for package in MAY_IMPORT:
        assert package in names
    assert len(names) > 100


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_packages_import_only_downward(package: str) -> None:
    wrong = []
    for name, path in modules():
        if not is_within(name, package):
            continue
        for line, target in imports(name, path):
            top = target.split(".")[0]
            if top in MAY_IMPORT and top != package and top not in MAY_IMPORT[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {name} imports {target}")
    assert not wrong, f"{package} may import only {sorted(MAY_IMPORT[package]) or 'nothing of the project'}:\n" + \
        "\n".join(wrong)


def test_nothing_but_a_shell_imports_a_shell() -> None:
    wrong = []
    for name, path in modules():
        if any(is_within(name, shell) for shell in SHELLS):
            continue
        for line, target in imports(name, path):
            if any(is_within(target, shell) for shell in SHELLS):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {name} imports {target}")
    assert not wrong, "the command line and the daemons sit on top; nothing else imports them:\n" + "\n".join(wrong)


def test_relative_and_nested_imports_are_resolved(tmp_path: Path) -> None:
    """The walker itself: relative imports, imports inside functions and under TYPE_CHECKING."""
    sample = tmp_path / "sample.py"
    sample.write_text("from typing import TYPE_CHECKING\n"
                      "from . import wire\n"
                      "from ..retry import RetryPolicy\n"
                      "if TYPE_CHECKING:\n    from mta.config import Config\n"
                      "def f():\n    import policy.cli\n")
    found = {target for _line, target in imports("warmup_base.policy_protocol.sample", sample)}
    assert {"warmup_base.policy_protocol.wire", "warmup_base.retry.RetryPolicy", "mta.config.Config",
            "policy.cli"} <= found
