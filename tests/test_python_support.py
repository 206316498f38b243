"""pyproject's requires-python is true: every module parses with the floor version's grammar, and no annotation
evaluated at import time uses a newer feature than the floor (`X | None` outside `from __future__ import
annotations` needs 3.10; sgm_inverse/data/__init__.py has one, which made the old ">=3.9" false)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _floor() -> tuple[int, int]:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'^requires-python\s*=\s*">=\s*(\d+)\.(\d+)"', text, flags=re.M)
    assert match, "requires-python must be a '>=X.Y' floor"
    return int(match.group(1)), int(match.group(2))


def _evaluated_annotations(tree: ast.Module):
    """Annotations Python evaluates at import: module / class level variables and every def's signature."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if a is not None and a.annotation is not None:
                    yield a.annotation
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, (ast.Module, ast.ClassDef)):
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign):
                    yield stmt.annotation


def _needs(path: Path, floor) -> tuple[int, int]:
    source = path.read_text()
    tree = ast.parse(source, filename=str(path), feature_version=floor)   # SyntaxError: newer grammar
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
                 any(a.name == "annotations" for a in n.names) for n in tree.body)
    if not future:
        for annotation in _evaluated_annotations(tree):
            if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(annotation)):
                return (3, 10)
    return (3, 0)


def test_requires_python_floor_holds_for_the_package():
    floor = _floor()
    files = sorted([*(ROOT / "sgm_inverse").rglob("*.py"), *(ROOT / "forward_models").rglob("*.py")])
    assert len(files) > 20
    needed = {path.relative_to(ROOT).as_posix(): _needs(path, floor) for path in files}
    worst = max(needed.values())
    assert floor >= worst, [p for p, v in needed.items() if v > floor]
    assert needed["sgm_inverse/data/__init__.py"] == (3, 10) and floor >= (3, 10)
