"""The package's layers point down only: every import (at the top of a module or inside a function) goes to a
module of the same layer or a lower one, and no modules import each other in a circle."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kerakp"
LAYERS = [   # lowest first; README "Layout" says what each is for
    ["kerakp", "kerakp.errors", "kerakp.quiet", "kerakp.timing", "kerakp.io", "kerakp.zoo", "kerakp.backends",
     "kerakp.schemas", "kerakp.codecs", "kerakp.model_info", "kerakp.metrics", "kerakp.analysis", "kerakp.devices"],
    ["kerakp.data"],
    ["kerakp.models"],
    ["kerakp.runtime"],
    ["kerakp.detect"],
    ["kerakp.inference"],
    ["kerakp.config", "kerakp.distill", "kerakp.train", "kerakp.export", "kerakp.evaluate", "kerakp.plots",
     "kerakp.report", "kerakp.annotate", "kerakp.bulk", "kerakp.distributed", "kerakp.launch", "kerakp.kaggle", "kerakp.emotion",
     "kerakp.tracking", "kerakp.drawing", "kerakp.compare", "kerakp.results", "kerakp.web"],
    ["kerakp.api"],
    ["kerakp.live", "kerakp.quickstart", "kerakp.cli", "kerakp.__main__"],
]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports() -> dict[str, set[str]]:
    """Module -> the kerakp modules it imports anywhere in its code."""
    known, graph = modules(), {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in known and m != name}
    return graph


def layer_of(name: str) -> int:
    best = [(len(prefix), i) for i, layer in enumerate(LAYERS) for prefix in layer
            if name == prefix or name.startswith(prefix + ".") and prefix != "kerakp"]
    if not best:
        pytest.fail(f"{name} is in no layer of tests/test_structure.py: place it")
    return max(best)[1]


def test_every_import_points_to_the_same_layer_or_below():
    upward = [f"{a} (layer {layer_of(a)}) -> {b} (layer {layer_of(b)})"
              for a, targets in imports().items() for b in targets if layer_of(b) > layer_of(a)]
    assert not upward, "imports that point up:\n" + "\n".join(sorted(upward))


def test_no_modules_import_each_other_in_a_circle():
    graph, state, circles = imports(), {}, []

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_check_sees_a_circle_and_an_upward_import(tmp_path, monkeypatch):
    """The two checks above fail when a circle or an upward import comes back (a fake package shows it)."""
    fake = tmp_path / "kerakp"
    (fake / "data").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("")
    (fake / "data" / "readers.py").write_text("from kerakp.data import pack\nfrom kerakp.api import Landmarker\n")
    (fake / "data" / "pack.py").write_text("def f():\n    from kerakp.data.readers import x\n")
    (fake / "api.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    with pytest.raises(AssertionError, match="kerakp.data.readers \\(layer 1\\) -> kerakp.api \\(layer 7\\)"):
        test_every_import_points_to_the_same_layer_or_below()
    with pytest.raises(AssertionError, match="kerakp.data.pack -> kerakp.data.readers -> kerakp.data.pack"):
        test_no_modules_import_each_other_in_a_circle()
