"""The public names of each package are pinned, and each one has a docstring."""

from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC = {
    "grammars": {"LintFinding", "lint", "literal", "load", "names", "path", "specialise"},
    "orchestrator.constrain": {
        "CompileTimeout",
        "CompiledGrammar",
        "Dialect",
        "GbnfError",
        "GrammarCompiler",
        "Invalid",
        "TokenMatcher",
        "Unsupported",
        "allowed",
        "allowed_rows",
        "check",
        "choice_to_gbnf",
        "emit",
        "gbnf",
        "lark_to_gbnf",
        "new_bitmask",
        "regex_grammar",
        "regex_to_gbnf",
        "vocab_bytes",
    },
    "dsl": {
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
    },
    "orchestrator": {
        "BackendError",
        "BackendRejected",
        "BackendTimeout",
        "BackendUnavailable",
        "ConfigError",
        "ConstraintViolation",
        "DependencyFailed",
        "GrammarError",
        "GrammarUnsupported",
        "LegatoError",
        "NodeStats",
        "Orchestrator",
        "PlanRejected",
        "ProgramCancelled",
        "ProgramError",
        "ProgramHandle",
        "RetryPolicy",
        "RunError",
        "ToolError",
        "arun",
        "backends",
        "errors",
        "run",
    },
    "orchestrator.backends": {
        "Backend",
        "Completion",
        "Hints",
        "LLMRequest",
        "LocalBackend",
        "Message",
        "OpenAICompatible",
        "PrefixHits",
        "backend_from_spec",
        "Replicas",
    },
    "orchestrator.scheduler": {
        "ATLAS",
        "BALANCERS",
        "Balancer",
        "Adaptive",
        "BatchDecision",
        "BatchPolicy",
        "CallInfo",
        "FCFS",
        "FCFSBatch",
        "PolicyBatch",
        "MLFQ",
        "PLAS",
        "POLICIES",
        "Policy",
        "PriorityBatch",
        "ProgramFCFS",
        "QueueConfig",
        "ReadyQueue",
        "SLO",
        "SeqView",
        "TTLPredictor",
        "batch_policy_for",
        "gittins_index",
        "make_policy",
    },
    "orchestrator.engine": {
        "BATCH_POLICIES",
        "DEFAULT_MODEL",
        "PRESETS",
        "TRAINED_MODELS",
        "BlockPool",
        "BlockTable",
        "CostModel",
        "Engine",
        "EngineRequest",
        "EngineTokenizer",
        "Event",
        "FinishEvent",
        "GGUFModel",
        "LlamaConfig",
        "LlamaModel",
        "ModelFileError",
        "ModelFiles",
        "OutOfBlocks",
        "Preset",
        "RequestRejected",
        "SampleParams",
        "Sampled",
        "SeqWork",
        "TokenEvent",
        "build_engine",
        "cached_model",
        "load_gguf",
        "make_model",
        "resolve_model",
        "sample",
        "trained_model",
        "virtual_engine",
        "WordTokenizer",
    },
    "orchestrator.train": {
        "DEMO",
        "SPLITS",
        "SQL_TEMPLATE",
        "Corpus",
        "Example",
        "SqlPair",
        "SqlWorld",
        "TorchLlama",
        "TrainConfig",
        "TrainResult",
        "encode_examples",
        "example_database",
        "heldout_split",
        "make_corpus",
        "preset_of",
        "question_literals",
        "render_chatml",
        "sql_grammar",
        "sql_prompt",
        "sql_required",
        "train_model",
        "write_loss_png",
    },
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_pinned(module: str) -> None:
    mod = importlib.import_module(module)
    assert set(mod.__all__) == PUBLIC[module]
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is in __all__ but missing"


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_have_docstrings(module: str) -> None:
    mod = importlib.import_module(module)
    assert inspect.getdoc(mod), f"{module} has no module docstring"
    missing = []
    for name in mod.__all__:
        obj = getattr(mod, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
            doc = obj.__doc__
            if not doc or not doc.strip():
                missing.append(name)
    assert not missing, f"{module}: no docstring on {missing}"


def test_testing_exports_the_scripted_backend_and_fake_server() -> None:
    testing = importlib.import_module("orchestrator.testing")
    assert {"ScriptedBackend", "FakeOpenAIServer"} <= set(testing.__all__)
