"""Branching on an awaited value: a support-ticket triage program.

The model first classifies the ticket (``dsl.select`` holds it to three labels). The program
awaits that label and takes a different path for each: bugs get reproduction steps, billing
questions look the invoice up with a tool, anything else gets a direct reply. The graph grows
at run time: ``legato graph`` shows only the classification, the branch appears once it runs.

    legato run examples/triage.py --backend http://127.0.0.1:8000/v1 -- "I was charged twice"
"""

from __future__ import annotations

import dsl

_INVOICES = {"ACME-42": "paid twice on 2026-11-02; refund issued"}


@dsl.tool
async def lookup_invoice(account: str) -> str:
    """Find the latest invoice of ``account`` (stands in for a billing API)."""
    return _INVOICES.get(account, "no invoice found")


@dsl.program
async def triage(ticket: str, account: str = "ACME-42") -> dict[str, str]:
    """Classify ``ticket`` and answer it along the path its label calls for."""
    label = dsl.select(
        "Classify this support ticket as bug, billing or other:\n{{ticket}}",
        ticket=ticket,
        options=["bug", "billing", "other"],
        name="label",
    )
    kind = await label
    if kind == "bug":
        reply = dsl.gen(
            "List the steps to reproduce: {{ticket}}", ticket=ticket, max_tokens=96, name="repro"
        )
    elif kind == "billing":
        invoice = lookup_invoice(account)
        reply = dsl.gen(
            "Answer the customer using the invoice record.\nTicket: {{ticket}}\n"
            "Invoice: {{invoice}}",
            ticket=ticket,
            invoice=invoice,
            max_tokens=96,
            name="billing_reply",
        )
    else:
        reply = dsl.gen("Reply helpfully: {{ticket}}", ticket=ticket, max_tokens=96, name="reply")
    return {"label": kind, "reply": await reply}
