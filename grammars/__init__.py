"""Grammar files (``*.lark``) shipped with Legato, loaded by name."""

__all__: list[str] = []
