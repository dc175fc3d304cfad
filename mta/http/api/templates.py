"""Templates rendered in Jinja2's sandbox: no attribute access to Python internals, bounded
ranges, undefined variables are errors (a typo must not send "Dear ," to a million people).
HTML templates are auto-escaped, text and subject templates are not. Compiled templates are
cached by source, so a batch of 10,000 recipients compiles each part once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from mta.http.api.errors import ApiError

MAX_OUTPUT = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str | None
    html: str | None


class TemplateProblem(ApiError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(422, "template_error", message, field)


_TEXT = SandboxedEnvironment(autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_HTML = SandboxedEnvironment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


@lru_cache(maxsize=256)
def _compile(source: str, html: bool) -> jinja2.Template:
    return (_HTML if html else _TEXT).from_string(source)


def render_part(source: str, variables: dict[str, Any], html: bool, field: str) -> str:
    try:
        out = _compile(source, html).render(variables)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(field, f"template syntax error on line {exc.lineno}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateProblem(field, f"template variable: {exc.message}") from None
    except SecurityError as exc:
        raise TemplateProblem(field, f"not allowed in a template: {exc}") from None
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, LookupError, OverflowError) as exc:
        raise TemplateProblem(field, f"template error: {exc}") from None
    if len(out) > MAX_OUTPUT:
        raise TemplateProblem(field, f"the rendered template is over {MAX_OUTPUT} characters")
    return out


def render(template: dict[str, str], variables: dict[str, Any], field: str = "template") -> Rendered:
    subject = render_part(template.get("subject", ""), variables, False, f"{field}.subject")
    # A subject is one header line, whatever the variables held.
    subject = " ".join(subject.split())
    text = render_part(template["text"], variables, False, f"{field}.text") if "text" in template else None
    html = render_part(template["html"], variables, True, f"{field}.html") if "html" in template else None
    return Rendered(subject, text, html)
