"""Benchmarks: `python -m benchmarks.run` (see run.py)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of one shape as a Markdown table; floats to four significant digits."""
    if not rows:
        return ""
    keys = list(rows[0])

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)
