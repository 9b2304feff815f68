"""The embedded engine: GGUF llama models run with numpy, continuous batching, paged KV cache."""

__all__: list[str] = []
