"""``{{name}}`` templates: find placeholders, check them against inputs, render values."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from dsl.errors import TemplateError

__all__ = ["check", "placeholders", "render", "render_value"]

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def placeholders(template: str) -> tuple[str, ...]:
    """Placeholder names in ``template``, in order of first use."""
    return tuple(dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(template)))


def _short(template: str) -> str:
    flat = " ".join(template.split())
    return flat if len(flat) <= 60 else flat[:57] + "..."


def check(template: str, inputs: Iterable[str], *, reserved: Iterable[str] = ()) -> None:
    """Raise ``TemplateError`` if a placeholder has no input or an input has no placeholder.

    ``reserved`` are the calling function's own keyword names, which cannot be inputs.
    """
    names = set(placeholders(template))
    given = list(inputs)
    for name in placeholders(template):
        if name in reserved:
            raise TemplateError(
                f"template {_short(template)!r} uses placeholder {{{{{name}}}}}, but {name!r} "
                "is a setting of the call, not an input: rename the placeholder",
                template=template,
                name=name,
            )
        if name not in given:
            raise TemplateError(
                f"template {_short(template)!r} uses placeholder {{{{{name}}}}} "
                f"but no input named {name!r} was given",
                template=template,
                name=name,
            )
    for name in given:
        if name not in names:
            raise TemplateError(
                f"input {name!r} is not used by template {_short(template)!r}: "
                f"add {{{{{name}}}}} to the template or drop the input",
                template=template,
                name=name,
            )


def render_value(value: Any) -> str:
    """How an input value appears in a prompt: strings as they are, lists one item per line,
    mappings and pydantic models as JSON, anything else through ``str``."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return "\n".join(render_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    dump = getattr(value, "model_dump_json", None)
    if callable(dump):
        return str(dump())
    return str(value)


def render(template: str, values: Mapping[str, Any]) -> str:
    """``template`` with each placeholder replaced by its rendered value."""
    return _PLACEHOLDER.sub(lambda m: render_value(values[m.group(1)]), template)
