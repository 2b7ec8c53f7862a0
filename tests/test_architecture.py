"""The floors of DESIGN.md: imports point downwards only (lazy imports inside functions count
too), training never imports diagnostics, and no module imports the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import rnnkit

ROOT = Path(rnnkit.__file__).parent

# floor of each top-level part of the package; a module may import its own floor and below
RANK = {
    "_io": 0, "_options": 0, "errors": 0, "_version": 0,
    "functional": 1, "native": 1, "kernels": 1,
    "nn": 2,
    "data": 3,
    "models": 4,
    "train": 5, "diagnostics": 5,
    "tasks": 6,
    "apps": 7,
    "cli": 8, "deploy": 8, "__init__": 8.5, "bench": 9, "__main__": 9,
}
FORBIDDEN = {("train", "diagnostics")}  # beside each other: the runner hands callbacks in


def _part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "rnnkit":
        return None
    part = parts[1] if len(parts) > 1 else "__init__"
    return part if part in RANK else "__init__"  # a name re-exported by rnnkit/__init__.py


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "rnnkit":
            found += [(node.lineno, f"rnnkit.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _violations() -> list[str]:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        owner = relative.parts[0].removesuffix(".py")
        for line, module in _imports(path):
            target = _part(module)
            if target is None or target == owner:
                continue
            if RANK[target] > RANK[owner] or (owner, target) in FORBIDDEN:
                bad.append(f"{relative}:{line} imports {module} ({owner} → {target})")
    return bad


def test_every_part_of_the_package_has_a_floor():
    parts = {p.name.removesuffix(".py") for p in ROOT.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert parts <= set(RANK), parts - set(RANK)


def test_imports_point_downwards():
    assert _violations() == []
