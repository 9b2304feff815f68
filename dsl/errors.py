"""The root of Legato's exception tree and the errors found in a program before anything runs.

Errors are shaped by who must act. ``ProgramError`` and its subclasses mean the program itself is
wrong (a bad template, a misused variable); they are raised while the program is traced or
submitted, before any request reaches an engine. Errors at run time live in
``orchestrator.errors`` and derive from ``LegatoError`` too, so ``except LegatoError`` catches
everything Legato raises.
"""

from __future__ import annotations

__all__ = [
    "GrammarError",
    "GrammarWarning",
    "LegatoError",
    "ProgramError",
    "TemplateError",
    "VarMisuseError",
]


class LegatoError(Exception):
    """Base class of every error Legato raises."""


class ProgramError(LegatoError):
    """The program is wrong; raised before any request is sent."""


class TemplateError(ProgramError):
    """A template's placeholders and its inputs do not match.

    Attributes:
        template: the template text.
        name: the placeholder or input name at fault.
    """

    def __init__(self, message: str, *, template: str, name: str) -> None:
        super().__init__(message)
        self.template = template
        self.name = name


class VarMisuseError(ProgramError):
    """A ``Var`` was used as if it already held a value (``str()``, an f-string, ``if``, ``==``).

    Attributes:
        var: the id of the variable.
    """

    def __init__(self, message: str, *, var: str) -> None:
        super().__init__(message)
        self.var = var


class GrammarError(ProgramError):
    """A grammar or JSON schema is invalid.

    Attributes:
        line, column: where in the grammar text it is wrong (1-based), where known.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class GrammarWarning(UserWarning):
    """A grammar will not be fully enforced while decoding (it is still validated after)."""
