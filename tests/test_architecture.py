"""The rooms of the package import only the rooms below them (docs/architecture.md)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rsn2"

# room -> the rooms it may import (besides itself); keep in step with docs/architecture.md
ALLOWED = {
    "errors": set(),
    "keys": {"errors"},
    "version": set(),
    "devices": {"errors"},
    "vector_width": set(),
    "process": {"vector_width"},
    "layers": {"errors"},
    "network": {"errors", "keys", "layers"},
    "selection": {"errors", "devices", "layers", "network"},
    "io": {"errors", "version", "layers", "network"},
    "data": {"errors", "io"},
    "preprocessing": {"errors", "network", "data"},
    "inference": {"errors", "devices", "layers", "network", "io", "preprocessing"},
    "training": {"errors", "devices", "layers", "network", "selection", "io"},
    "metrics": {"errors"},
    "deploy": {"errors", "version", "devices", "layers", "network", "inference", "io", "preprocessing"},
    "workflow": {
        "errors",
        "keys",
        "devices",
        "layers",
        "network",
        "selection",
        "inference",
        "io",
        "data",
        "preprocessing",
        "training",
    },
    "experiments": {"errors", "keys", "version", "devices", "layers", "network", "selection", "io", "data", "training"},
    "continual": {"errors", "keys", "devices", "layers", "network", "selection", "io", "data", "training", "metrics"},
    "cli": {
        "errors",
        "version",
        "devices",
        "layers",
        "network",
        "selection",
        "inference",
        "io",
        "data",
        "preprocessing",
        "training",
        "experiments",
        "deploy",
        "workflow",
        "metrics",
        "continual",
        "process",
    },
}


def _room(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names, relative ones (``from .x import y``) resolved."""
    if node.level == 0:
        return node.module or ""
    package = ["rsn2", *path.relative_to(PACKAGE).with_suffix("").parts][:-1]  # a module's or __init__'s package
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imported_rooms(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):  # function-level imports too
        names = []
        if isinstance(node, ast.ImportFrom):
            module = _absolute(path, node)
            names = [module] if module != "rsn2" else [f"rsn2.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        rooms |= {n.split(".")[1] for n in names if n.startswith("rsn2.")}
    return rooms


def test_every_room_imports_only_the_rooms_below_it():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        room = _room(path)
        if room in ("__init__", "__main__"):
            continue
        assert room in ALLOWED, f"{path}: room {room!r} is not in docs/architecture.md's map"
        for other in _imported_rooms(path) - ALLOWED[room] - {room}:
            wrong.append(f"{path.relative_to(PACKAGE)} ({room}) imports rsn2.{other}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_function_level_and_package_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from rsn2.training import fit_stage\nfrom rsn2 import inference\n")
    assert _imported_rooms(module) == {"training", "inference"}


def test_the_check_resolves_relative_imports():
    def resolved(path, source):
        return _absolute(path, ast.parse(source).body[0])

    module = PACKAGE / "continual" / "methods.py"
    assert resolved(module, "from .streams import x") == "rsn2.continual.streams"
    assert resolved(module, "from ..training import fit_stage") == "rsn2.training"
    assert resolved(module, "from .. import inference") == "rsn2"
    assert resolved(PACKAGE / "continual" / "__init__.py", "from .runner import x") == "rsn2.continual.runner"
