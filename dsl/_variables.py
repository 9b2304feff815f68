"""``Var``: a semantic variable (Parrot), the named, typed future that every DSL call returns."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar

from dsl.errors import VarMisuseError

if TYPE_CHECKING:
    from dsl._builder import Builder

__all__ = ["Var"]

T_co = TypeVar("T_co", covariant=True)


class Var(Generic[T_co]):
    """A value that a node of the program's graph will produce.

    A ``Var`` is returned at once by ``dsl.gen``, ``dsl.select`` and tool calls; pass it as an
    input to later calls (the graph records the edge) or ``await`` it to get the value. It has no
    value before that, so using it as text (``str(var)``, an f-string), as a truth value or in a
    comparison (``var == "A"``, ``var in options``) raises ``VarMisuseError``: put it in a
    template with a ``{{name}}`` placeholder, or ``await`` it and compare the value. A ``Var``
    hashes by identity, so it can still be a set member or a dict key.

    Attributes:
        id: the id of the node that produces it, unique in its program.
        type: the Python type of its value, where known (``str`` for ``gen``).
    """

    __slots__ = ("_builder", "id", "type")

    def __init__(self, id: str, type: Any, builder: Builder) -> None:
        self.id = id
        self.type = type
        self._builder = builder

    def __await__(self) -> Generator[Any, None, T_co]:
        result: T_co = yield from self._builder.wait(self).__await__()
        return result

    def __repr__(self) -> str:
        return f"Var({self.id!r})"

    def _misuse(self, how: str) -> NoReturn:
        raise VarMisuseError(
            f"Var {self.id!r} was used {how} before it has a value. Pass it to dsl.gen as an "
            f"input and write {{{{{self.id}}}}} in the template (e.g. "
            f"dsl.gen('... {{{{{self.id}}}}} ...', {self.id}=var)), or `await` it first.",
            var=self.id,
        )

    def _compared(self, op: str) -> NoReturn:
        also = " (directly, or by `in` or list.index)" if op == "==" else ""
        raise VarMisuseError(
            f"Var {self.id!r} was compared with {op}{also} before it has a value, so the "
            f"comparison cannot mean anything. `await` it first and compare the value: "
            f"value = await var, then `value {op} ...`.",
            var=self.id,
        )

    def __eq__(self, other: object) -> NoReturn:
        self._compared("==")

    def __ne__(self, other: object) -> NoReturn:
        self._compared("!=")

    def __lt__(self, other: object) -> NoReturn:
        self._compared("<")

    def __le__(self, other: object) -> NoReturn:
        self._compared("<=")

    def __gt__(self, other: object) -> NoReturn:
        self._compared(">")

    def __ge__(self, other: object) -> NoReturn:
        self._compared(">=")

    __hash__ = object.__hash__

    def __str__(self) -> str:
        self._misuse("in str()")

    def __format__(self, spec: str) -> str:
        self._misuse("in an f-string or format()")

    def __bool__(self) -> bool:
        self._misuse("as a truth value")

    def __iter__(self) -> NoReturn:
        self._misuse("as an iterable")

    def __len__(self) -> int:
        self._misuse("in len()")

    def __add__(self, other: object) -> NoReturn:
        self._misuse("with +")

    def __radd__(self, other: object) -> NoReturn:
        self._misuse("with +")
