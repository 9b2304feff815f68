"""Benchmarks (``legato bench NAME``): each measures against a baseline run in the same process,
shows a progress bar, prints rich tables and writes a ``Report`` as JSON (DESIGN.md section 6).

Modules: ``orchestrator.bench.overhead`` (latency Legato adds to one call).
"""

from orchestrator.bench._report import Report, Target, progress

__all__ = ["Report", "Target", "progress"]
