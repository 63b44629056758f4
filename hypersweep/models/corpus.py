"""Text for the character-level datasets: a file, or the default corpus.

The default corpus is the docstrings of the Python standard library's modules:
present wherever Python is, no download. It is read with `ast` (nothing is
imported, so no module runs) from the stdlib's top-level `.py` files in sorted
order, so the same Python version always gives the same text.
"""
from __future__ import annotations

import ast
import codecs
import sysconfig
from pathlib import Path

from hypersweep.models.errors import UserError


def read_text(path: str, max_chars: int) -> str:
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"data.options.path: {path} is a directory; name a text file in it")
    if not p.is_file():
        raise UserError(f"data.options.path: no such text file: {path}")
    try:
        with p.open("rb") as f:
            data = f.read(4 * max_chars)    # a UTF-8 character is at most 4 bytes
    except OSError as e:
        raise UserError(f"data.options.path: cannot read {path}: {e}") from None
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0   # not text
    try:
        # Incremental: a character cut in two by the read limit is not an error.
        text = codecs.getincrementaldecoder("utf-8")().decode(
            data[bom:], final=len(data) < 4 * max_chars)
    except UnicodeDecodeError as e:
        text = data[bom:bom + e.start].decode("utf-8")
        if len(text) < max_chars:    # past the characters used, a bad byte does no harm
            at = bom + e.start
            raise UserError(f"data.options.path: {path} is not UTF-8: byte 0x{data[at]:02x} "
                            f"at offset {at} does not decode; the file must be UTF-8 "
                            f"text") from None
    if not text:
        raise UserError(f"data.options.path: {path} is empty")
    return text[:max_chars]


def stdlib_docstrings(max_chars: int) -> str:
    """Up to `max_chars` of stdlib docstrings, module after module, blank-line separated.
    Non-ASCII characters become '?' so the vocabulary stays small (about 95)."""
    parts: list[str] = []
    total = 0
    for source in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        for doc in _docstrings(source):
            parts.append(doc)
            total += len(doc) + 2
            if total >= max_chars:
                return _ascii("\n\n".join(parts))[:max_chars]
    return _ascii("\n\n".join(parts))[:max_chars]


def _docstrings(source: Path) -> list[str]:
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return []
    nodes = [tree] + [n for n in ast.walk(tree)
                      if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    docs = (ast.get_docstring(n) for n in nodes)
    return [d for d in docs if d and len(d) >= 40]   # skip one-word stubs


def _ascii(text: str) -> str:
    return "".join(c if (32 <= ord(c) < 127 or c == "\n") else "?" for c in text)
