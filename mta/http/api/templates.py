"""Templates rendered in Jinja2's sandbox: no attribute access to Python internals, bounded
ranges, undefined variables are errors (a typo must not send "Dear ," to a million people).
HTML templates are auto-escaped, text and subject templates are not. Compiled templates are
cached by source, so a batch of 10,000 recipients compiles each part once.

A template is a program a client sends, and it runs on the daemon's event loop, so it is kept
small in what it may cost: output past MAX_OUTPUT stops it as it grows, repeating a string or
list (`*`) and powers (`**`) may not build anything that large, and a part that runs longer than
RENDER_SECONDS (loops inside loops) is stopped by a timer. Each is a 422 naming the part."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from mta.http.api.errors import ApiError

MAX_OUTPUT = 5 * 1024 * 1024
RENDER_SECONDS = 1.0        # one part of one message; a real template takes well under a millisecond
MAX_POWER_BITS = 4096       # of an integer built with **


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str | None
    html: str | None


class TemplateProblem(ApiError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(422, "template_error", message, field)


class _TooLong(Exception):
    pass


class _BoundedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int) \
                        and len(seq) * times > MAX_OUTPUT:
                    raise SecurityError(f"a repetition of over {MAX_OUTPUT} items")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 \
                and max(left.bit_length(), 1) * right > MAX_POWER_BITS:
            raise SecurityError(f"a power of over {MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)


_TEXT = _BoundedSandbox(autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_HTML = _BoundedSandbox(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupts the render after `seconds` (a SIGALRM timer: Python code in the main thread sees
    it between two steps, however the template loops). Elsewhere than the main thread, no limit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(_signum: int, _frame: Any) -> None:
        raise _TooLong

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _bounded_render(source: str, html: bool, variables: dict[str, Any], field: str) -> str:
    parts: list[str] = []
    size = 0
    with _time_limit(RENDER_SECONDS):
        for chunk in _compile(source, html).generate(variables):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateProblem(field, f"the rendered template is over {MAX_OUTPUT} characters")
            parts.append(chunk)
    return "".join(parts)


@lru_cache(maxsize=256)
def _compile(source: str, html: bool) -> jinja2.Template:
    return (_HTML if html else _TEXT).from_string(source)


def render_part(source: str, variables: dict[str, Any], html: bool, field: str) -> str:
    try:
        out = _bounded_render(source, html, variables, field)
    except _TooLong:
        raise TemplateProblem(field, f"the template ran longer than {RENDER_SECONDS:g} s") from None
    except RecursionError:
        raise TemplateProblem(field, "the template nests too deeply") from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(field, f"template syntax error on line {exc.lineno}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateProblem(field, f"template variable: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateProblem(field, f"not allowed in a template: {exc}") from None
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError, OverflowError) as exc:
        raise TemplateProblem(field, f"template error: {exc}") from None
    return out


def render(template: dict[str, str], variables: dict[str, Any], field: str = "template") -> Rendered:
    subject = render_part(template.get("subject", ""), variables, False, f"{field}.subject")
    # A subject is one header line, whatever the variables held.
    subject = " ".join(subject.split())
    text = render_part(template["text"], variables, False, f"{field}.text") if "text" in template else None
    html = render_part(template["html"], variables, True, f"{field}.html") if "html" in template else None
    return Rendered(subject, text, html)
