"""The engine's tokenizer: a ``tokenizers`` BPE from ``tokenizer.json`` or built from the GGUF's
own vocabulary, with incremental decoding and the chat template."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from orchestrator.engine._gguf import GGUFModel, ModelFileError

__all__ = ["EngineTokenizer", "WordTokenizer"]

_CONTROL = 3  # GGUF token type of control (special) tokens


class EngineTokenizer:
    """Encodes prompts, decodes tokens and renders chat messages for one model.

    Chat messages are rendered as ChatML (``<|im_start|>role\\ncontent<|im_end|>``) when the
    model's vocabulary has those tokens, else as ``role: content`` lines.
    """

    def __init__(
        self, tokenizer: Tokenizer, *, bos_id: int | None, eos_id: int | None, add_bos: bool = False
    ) -> None:
        self.tk = tokenizer
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.add_bos = add_bos
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.chatml = tokenizer.token_to_id("<|im_start|>") is not None and (
            tokenizer.token_to_id("<|im_end|>") is not None
        )
        self.im_end_id = tokenizer.token_to_id("<|im_end|>")

    @classmethod
    def for_model(cls, model: GGUFModel) -> EngineTokenizer:
        """The tokenizer of ``model``: ``tokenizer.json`` beside the GGUF if there is one, else
        one built from the GGUF's vocabulary and merges (GPT-2 style byte-level BPE)."""
        meta = model.tokenizer
        bos = meta.get("bos_token_id")
        eos = meta.get("eos_token_id")
        add_bos = bool(meta.get("add_bos_token", False))
        beside = model.path.with_name("tokenizer.json")
        if beside.is_file():
            return cls(Tokenizer.from_file(str(beside)), bos_id=bos, eos_id=eos, add_bos=add_bos)
        kind = meta.get("model")
        if kind != "gpt2":
            raise ModelFileError(
                f"{model.path}: tokenizer model {kind!r} is not supported without a "
                "tokenizer.json beside the file (supported: 'gpt2' byte-level BPE)"
            )
        tokens: list[str] = list(meta["tokens"])
        merges = [tuple(m.split(" ", 1)) for m in meta.get("merges", [])]
        vocab = {t: i for i, t in enumerate(tokens)}
        tk = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tk.decoder = decoders.ByteLevel()
        types: list[int] = list(meta.get("token_type", []))
        specials = [
            AddedToken(tokens[i], special=True, normalized=False)
            for i, t in enumerate(types)
            if t == _CONTROL
        ]
        if specials:
            tk.add_special_tokens(specials)
        return cls(tk, bos_id=bos, eos_id=eos, add_bos=add_bos)

    @classmethod
    def from_file(cls, path: str | Path) -> EngineTokenizer:
        """A tokenizer from a ``tokenizer.json`` (bos/eos from its ``<s>``/``</s>`` tokens)."""
        tk = Tokenizer.from_file(str(path))
        return cls(tk, bos_id=tk.token_to_id("<s>"), eos_id=tk.token_to_id("</s>"))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special tokens in the text are recognised)."""
        ids: list[int] = self.tk.encode(text, add_special_tokens=False).ids
        if self.add_bos and self.bos_id is not None:
            return [self.bos_id, *ids]
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (special tokens dropped)."""
        text: str = self.tk.decode(list(ids), skip_special_tokens=True)
        return text

    def render_chat(self, messages: Sequence[Any]) -> str:
        """The prompt for chat ``messages`` (objects or dicts with role and content), ending
        where the assistant's answer begins."""
        parts = []
        for m in messages:
            role = m["role"] if isinstance(m, dict) else m.role
            content = m["content"] if isinstance(m, dict) else m.content
            if not isinstance(content, str):
                content = json.dumps(content)
            if self.chatml:
                parts.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
            else:
                parts.append(f"{role}: {content}\n")
        parts.append("<|im_start|>assistant\n" if self.chatml else "assistant:")
        return "".join(parts)

    def stop_ids(self) -> set[int]:
        """Tokens that end a generation: end of sequence and, for ChatML, ``<|im_end|>``."""
        return {i for i in (self.eos_id, self.im_end_id) if i is not None}


class WordTokenizer:
    """A stand-in tokenizer for virtual time: one token per whitespace-separated word, with a
    stable id from the word's CRC-32, so equal text prefixes give equal token prefixes (and hit
    the prefix cache) and a prompt's length in tokens is its length in words. Decodes to ""."""

    eos_id: int | None = None
    bos_id: int | None = None

    def encode(self, text: str) -> list[int]:
        """One stable id per word."""
        return [zlib.crc32(w.encode()) & 0x7FFFFFFF for w in text.split()]

    def decode(self, ids: Sequence[int]) -> str:
        """Virtual tokens have no text."""
        return ""

    def render_chat(self, messages: Sequence[Any]) -> str:
        """The messages' roles and contents, in order."""
        return " ".join(
            f"{m['role'] if isinstance(m, dict) else m.role} "
            f"{m['content'] if isinstance(m, dict) else m.content}"
            for m in messages
        )

    def stop_ids(self) -> set[int]:
        """No end tokens: virtual generations run to ``max_tokens``."""
        return set()
