"""Legato's DSL: write agent programs whose calls return semantic variables and form a graph.

The DSL is pure: it builds graphs and never runs them. ``orchestrator.run`` runs a program;
``Program.trace`` returns its static graph without sending anything.

Example::

    import dsl

    @dsl.program
    async def answer(question: str) -> str:
        draft = dsl.gen("Answer briefly: {{q}}", q=question, max_tokens=64)
        return await dsl.gen("Improve this answer: {{draft}}", draft=draft)
"""

from dsl import passes
from dsl._builder import Builder, Sink
from dsl._calls import gen, select
from dsl._grammar import Grammar
from dsl._graph import (
    Graph,
    InputNode,
    Interp,
    LLMNode,
    Node,
    PlanNode,
    Ref,
    SamplingParams,
    SelectNode,
    ToolNode,
    substitute,
)
from dsl._program import Program, program
from dsl._template import render, render_value
from dsl._tools import Tool, tool
from dsl._variables import Var
from dsl.errors import (
    GrammarError,
    GrammarWarning,
    LegatoError,
    ProgramError,
    TemplateError,
    VarMisuseError,
)
from dsl.plans import Expression, plan

__all__ = [
    "Builder",
    "Expression",
    "Grammar",
    "GrammarError",
    "GrammarWarning",
    "Graph",
    "InputNode",
    "Interp",
    "LLMNode",
    "LegatoError",
    "Node",
    "PlanNode",
    "Program",
    "ProgramError",
    "Ref",
    "SamplingParams",
    "SelectNode",
    "Sink",
    "TemplateError",
    "Tool",
    "ToolNode",
    "Var",
    "VarMisuseError",
    "gen",
    "passes",
    "plan",
    "program",
    "render",
    "render_value",
    "select",
    "substitute",
    "tool",
]
