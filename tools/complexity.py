"""The complexity gate: every function and method under src/kassa whose cyclomatic
complexity, as radon counts it (decisions plus each `and`/`or`), is over the limit.

    python tools/complexity.py [--max 15] [paths ...]

Prints `path:line name complexity` for each, worst first, and exits 1 if there is any.
ruff's C90 runs in `ruff check` too, but does not count boolean operators: this is the
figure issue 9 holds the code to.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from radon.complexity import cc_visit
from radon.visitors import Class, Function

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PATHS = (ROOT / "src" / "kassa",)
MAX_COMPLEXITY = 15


class Finding(NamedTuple):
    path: Path
    line: int
    name: str
    complexity: int


def _functions(blocks: Iterable[Function | Class], prefix: str = "") -> Iterator[Function]:
    """Every function, method and nested function, named `Class.method` or `outer.inner`.
    (radon lists methods among the functions already; classes themselves are skipped.)"""
    for block in blocks:
        if isinstance(block, Function):
            name = f"{prefix}{block.fullname}"
            yield block._replace(name=name)
            yield from _functions(block.closures, f"{name}.")


def findings(paths: Iterable[Path], limit: int) -> list[Finding]:
    found = []
    for root in paths:
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for file in files:
            blocks = cc_visit(file.read_text(encoding="utf-8"))
            for func in _functions(blocks):
                if func.complexity > limit:
                    found.append(Finding(file, func.lineno, func.name, func.complexity))
    return sorted(found, key=lambda f: (-f.complexity, str(f.path), f.line))


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=list(DEFAULT_PATHS))
    parser.add_argument("--max", type=int, default=MAX_COMPLEXITY, dest="limit")
    args = parser.parse_args(argv)
    found = findings(args.paths, args.limit)
    for f in found:
        print(f"{_shown(f.path)}:{f.line} {f.name} {f.complexity}")
    if found:
        print(
            f"{len(found)} function(s) over cyclomatic complexity {args.limit} (radon)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
