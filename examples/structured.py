"""Output that parses: a JSON record held to a pydantic model, and SQL held to a Lark grammar.

``dsl.gen(..., schema=Model)`` returns an instance of the model; ``grammar=`` takes any
``dsl.Grammar`` (a shipped Lark grammar by name, Lark text, a regex, a JSON schema or choices).
On the embedded engine each grammar is a hard token mask, so the output parses whatever the
model's weights; on vLLM, SGLang and llama.cpp it goes in the engine's own field; elsewhere the
runtime validates and retries. Every output is re-parsed before the program sees it.

    legato run examples/structured.py -- "a customer asks for their last three orders"
"""

from __future__ import annotations

import pydantic

import dsl


class Ticket(pydantic.BaseModel):
    """A support request, as structured data."""

    topic: str = pydantic.Field(max_length=24)
    urgent: bool
    order_count: int = pydantic.Field(ge=0, le=99)


# A SELECT over one known table, written in Lark. (The shipped ``sqlite_select`` grammar covers
# all of SQLite's SELECT; with real names in it, it is what Text-to-SQL pipelines use.)
SQL = dsl.Grammar.lark(
    r"""
    start: "SELECT " columns " FROM orders" where? order? limit?
    columns: "*" | column (", " column)*
    column: "id" | "customer" | "day" | "total"
    where: " WHERE " column (" = " | " > " | " < ") value
    value: /[0-9]{1,4}/ | "'" /[A-Za-z]{1,12}/ "'"
    order: " ORDER BY " column (" ASC" | " DESC")
    limit: " LIMIT " /[1-9]/
    """
)
ORDER_ID = dsl.Grammar.regex(r"ORD-[0-9]{4}")


@dsl.program
async def structured(request: str) -> dict[str, object]:
    """Turn ``request`` into a ticket record, a query for it and an order id, in parallel."""
    ticket = dsl.gen(
        "Describe this request as JSON: {{request}}",
        request=request,
        schema=Ticket,
        max_tokens=96,
        name="ticket",
    )
    query = dsl.gen(
        "Write one SQLite SELECT for: {{request}}",
        request=request,
        grammar=SQL,
        max_tokens=96,
        name="query",
    )
    order = dsl.gen("Which order? {{request}}", request=request, grammar=ORDER_ID, name="order")
    record = await ticket
    return {"ticket": record.model_dump(), "query": await query, "order": await order}
