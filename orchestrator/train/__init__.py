"""Training Legato's demo model: a corpus drawn from the Text-to-SQL example databases and the
tool protocols, its held-out splits, the per-question SQL grammar, and a small llama model
trained with torch on the CPU (``legato model train``), written as GGUF, ``tokenizer.json`` and a
Hugging Face folder.

    world = SqlWorld("/tmp/dbs")                  # the example databases, built from their seed
    corpus = make_corpus(world, seed=0)           # 150,000 chat examples, deterministic
    test = heldout_split(corpus, "values", 200)   # questions with values never in training
    result = train_model("out/", TrainConfig(minutes=10), corpus=corpus)

The demo model that ships with Legato (the embedded engine's default, ``"demo"``) was made by
``legato model train --preset demo --minutes 10 --seed 0``; ``legato bench model`` measures it.
"""

from orchestrator.train._corpus import (
    SPLITS,
    SQL_TEMPLATE,
    Corpus,
    Example,
    heldout_split,
    make_corpus,
    render_chatml,
    sql_prompt,
)
from orchestrator.train._grammar import (
    example_database,
    question_literals,
    sql_grammar,
    sql_required,
)
from orchestrator.train._png import write_loss_png
from orchestrator.train._sql import SqlPair, SqlWorld
from orchestrator.train._torch import TorchLlama, preset_of
from orchestrator.train._train import DEMO, TrainConfig, TrainResult, encode_examples, train_model

__all__ = [
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
    "sql_required",
    "sql_prompt",
    "train_model",
    "write_loss_png",
]
