"""The package's floor plan in numbers: imports that run back up the layers, import circles, modules
per folder, the longest functions, functions with many parameters, and how many places compute the
repository root, a model's folder name or a run's file stem.

    python bench/layout.py [--root .]

The layers (lowest first) are `LAYERS` below; tests/test_layout.py holds the package to them.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
from collections import Counter

# Lowest first. A module may import from its own layer or any lower one, never from a higher one.
LAYERS: list[tuple[str, ...]] = [
    ("rebalance.errors", "rebalance.version", "rebalance.files.atomic"),
    ("rebalance.files", "rebalance.store", "rebalance.examples", "rebalance.control", "rebalance.calibration",
     "rebalance.parallel", "rebalance.grading", "rebalance.datasets"),
    ("rebalance.models", "rebalance.decoding", "rebalance.analysis", "rebalance.reports"),
    ("rebalance.stages",),
    ("rebalance.pipeline",),
    ("rebalance.organism",),
    ("rebalance",),  # the package's own __init__ (it only names the version)
]


def layer_of(module: str) -> int:
    best, level = -1, len(LAYERS)
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), index
    return level


def modules(root: str) -> dict[str, str]:
    """{dotted name: path} of every module of the package."""
    found = {}
    for folder, _, files in os.walk(os.path.join(root, "rebalance")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                found[dotted[: -len(".__init__")] if dotted.endswith(".__init__") else dotted] = path
    return found


def imports(path: str, name: str, known: set[str]) -> set[str]:
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph(root: str) -> dict[str, set[str]]:
    found = modules(root)
    return {name: imports(path, name, set(found)) for name, path in found.items()}


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in edges.items() for b in targets if layer_of(b) > layer_of(a))


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def functions(root: str):
    """(length in lines, parameters, where) of every function of the package."""
    for name, path in modules(root).items():
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
                count -= 1 if args.args and args.args[0].arg in ("self", "cls") else 0
                yield node.end_lineno - node.lineno + 1, count, f"{name}.{node.name}"


PLACES = {
    "the repository root": re.compile(r"dirname\(os\.path\.dirname\(.*abspath\(__file__\)"),
    "a model's folder name": re.compile(r"os\.path\.basename\(os\.path\.normpath|def model_basename|model_basename\('"),
    "a run's stem": re.compile(r"def (collection_stem|steered_stem)|\.merged\.jsonl\"|f\"\{stem\}\.merged"),
}


def places(root: str) -> dict[str, list[str]]:
    paths = list(modules(root).values()) + [os.path.join(root, "scripts", f) for f in os.listdir(
        os.path.join(root, "scripts")) if f.endswith(".sh")]
    found: dict[str, list[str]] = {what: [] for what in PLACES}
    for path in paths:
        for number, line in enumerate(open(path, encoding="utf-8"), 1):
            for what, pattern in PLACES.items():
                if pattern.search(line):
                    found[what].append(f"{os.path.relpath(path, root)}:{number}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = parser.parse_args(argv)
    edges = graph(args.root)
    readme = open(os.path.join(args.root, "README.md"), encoding="utf-8").read().splitlines()
    print(f"README.md: {len(readme)} lines")
    up = upward(edges)
    print(f"imports running back up: {len(up)}" + "".join(f"\n  {a} -> {b}" for a, b in up))
    cyc = circles(edges)
    print(f"import circles: {len(cyc)}" + "".join(f"\n  {' <-> '.join(c)}" for c in cyc))
    per_folder = Counter(name.rpartition(".")[0] if not os.path.basename(path) == "__init__.py" else name
                         for name, path in modules(args.root).items())
    print("modules per folder: " + ", ".join(f"{k} {v}" for k, v in sorted(per_folder.items())))
    funcs = sorted(functions(args.root), reverse=True)
    print("longest functions: " + ", ".join(f"{where} ({length} lines)" for length, _, where in funcs[:3]))
    many = sorted((count, where) for _, count, where in funcs if count > 8)
    print(f"functions with more than 8 parameters: {len(many)}" + "".join(f"\n  {w} ({c})" for c, w in many))
    for what, where in places(args.root).items():
        print(f"places computing {what}: {len(where)} ({', '.join(where)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
