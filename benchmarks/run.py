"""`python -m benchmarks.run [--only NAME ...] [--quick]`: run benchmarks, update RESULTS.md.

Every sibling module of this package that defines `SECTION` (a short name, the
`--only` selector), `TITLE` and `run(quick: bool) -> str` (a Markdown body) is a
benchmark; one that also defines `available() -> str | None` is skipped, its
section kept, where that returns why it cannot run (the GPU section on a machine
without one). Each run rewrites only its own section of RESULTS.md, headed by the
machine, the date and the exact command, so sections measured at different
times say so.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import pkgutil
import platform
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
HEADER = "# Benchmark results\n\nWritten by `make bench` (`python -m benchmarks.run`); " \
         "each section is replaced when its benchmark runs again.\n"


def benchmarks() -> dict[str, ModuleType]:
    found = {}
    for info in sorted(pkgutil.iter_modules([str(HERE)]), key=lambda i: i.name):
        if info.name == "run":
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        if hasattr(module, "SECTION") and callable(getattr(module, "run", None)):
            found[module.SECTION] = module
    return found


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import optuna
    import torch
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"torch {torch.__version__}, optuna {optuna.__version__}, {platform.system()}")


def section_text(module: ModuleType, body: str, command: str) -> str:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!-- bench:{module.SECTION} -->\n## {module.TITLE}\n\n"
            f"- machine: {machine()}\n- date: {now}\n- command: `{command}`\n\n"
            f"{body.strip()}\n<!-- /bench:{module.SECTION} -->\n")


def update_results(section: str, text: str, path: Path = RESULTS) -> None:
    """Replace this section's block, or append it; other sections are left as they are."""
    current = path.read_text() if path.exists() else HEADER
    block = re.compile(rf"<!-- bench:{re.escape(section)} -->.*?<!-- /bench:{re.escape(section)} -->\n?",
                       re.DOTALL)
    if block.search(current):
        current = block.sub(lambda _: text, current)
    else:
        current = current.rstrip("\n") + "\n\n" + text
    path.write_text(current)


def main(argv: list[str] | None = None) -> int:
    found = benchmarks()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(found), metavar="NAME",
                        help=f"run only this benchmark (repeatable); one of: {', '.join(sorted(found))}")
    parser.add_argument("--quick", action="store_true", help="a small version, to check it runs")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the Markdown file to update")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    for name in args.only or sorted(found):
        module = found[name]
        print(f"== {name}: {module.TITLE}", flush=True)
        why_not = module.available() if hasattr(module, "available") else None
        if why_not:         # e.g. no GPU here: keep the section measured elsewhere
            print(f"skipped ({why_not}); its section in {args.results.name} is kept", flush=True)
            continue
        body = module.run(quick=args.quick)
        update_results(name, section_text(module, body, command.strip()), args.results)
        print(body, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
