"""The tree's shape, asserted: no import cycle among the project's modules (module-level, inside functions, or
by a literal module name given to `importlib.import_module`), the layers import only downwards (pipelines ->
operators -> state/models), no module of pipelines/ over 400 lines (state/rocks.py, at 641, is the one longer
module left in the lower layers), and unit tests in packages mirroring the layers, without layer prefixes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipelines", "operators", "state", "models")
MAX_LINES = 400
#: What each layer may import from the project (besides itself).
ALLOWED = {
    "pipelines": {"operators", "state", "models"},
    "operators": {"state", "models"},
    "state": set(),
    "models": set(),
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _string_import(node: ast.AST) -> str | None:
    """The module a call `importlib.import_module("a.b")` / `import_module("a.b")` / `__import__("a.b")` names."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return None
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    value = node.args[0].value
    return value if called in ("import_module", "__import__") and isinstance(value, str) else None


def _imports(name: str, path: Path) -> set[str]:
    """The project modules `name` imports anywhere in its body, by statement or by a literal name
    (`importlib.import_module("pipelines.x")` is an import too: a cycle through it is still a cycle)."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        by_name = _string_import(node)
        if by_name is not None:
            targets = [by_name]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_layers_import_only_downwards() -> None:
    wrong = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if (layer := name.split(".")[0]) != (other := target.split(".")[0]) and other not in ALLOWED[layer]
    ]
    assert wrong == []


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("pipelines")))
def test_module_is_under_400_lines(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines; split it by what changes together"


def test_the_walk_sees_the_tree() -> None:  # the checks above would pass vacuously on an empty walk
    assert len(MODULES) > 60
    assert "pipelines.registry" in GRAPH["pipelines.risk.definition"]
    assert "pipelines.runtimes.flink.functions" in MODULES


#: The tests' tree: `tests/unit/<layer>/` holds the unit tests of one layer of the code (plus `benchmarks/`).
UNIT = ROOT / "tests" / "unit"
TEST_TREES = (*PACKAGES, "benchmarks")


def test_the_unit_tests_mirror_the_code_tree_as_packages_without_layer_prefixes() -> None:
    folders = sorted(p.name for p in UNIT.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == sorted(TEST_TREES)
    folders_with_tests = {UNIT, *(p.parent for p in UNIT.rglob("test_*.py"))}
    missing = sorted(str(d) for d in folders_with_tests if not (d / "__init__.py").is_file())
    assert missing == [], "test folders are packages: helpers are imported as modules (tests.unit.state.state_testkit)"
    prefixed = [str(p.relative_to(ROOT)) for layer in TEST_TREES for p in (UNIT / layer).glob("test_*.py")
                if p.stem.startswith((f"test_{layer}_", "test_ops_"))]
    assert prefixed == [], "the folder names the layer: tests/unit/operators/test_rules.py, not test_ops_rules.py"


#: The built-in pipelines, each in its own folder (`pipelines/risk/`, `pipelines/reco/`).
BUILT_IN = ("risk", "reco")


def test_no_module_outside_a_pipelines_folder_names_it() -> None:
    """A pipeline is found through the registry: no `== "risk"`, no `choices=["risk", "reco"]`, no
    `get("reco")` in the code outside `pipelines/risk|reco/` and `operators/risk|reco/` (prose that mentions one
    is fine; the tests and benchmarks name what they exercise)."""
    named = [
        f"{MODULES[name].relative_to(ROOT)}:{node.lineno}: {node.value!r}"
        for name in MODULES
        if name.split(".")[1:2] not in (["risk"], ["reco"])
        for node in ast.walk(ast.parse(MODULES[name].read_text()))
        if isinstance(node, ast.Constant) and node.value in BUILT_IN
    ]
    assert named == []
    assert {"pipelines.risk.definition", "pipelines.reco.definition"} <= set(MODULES)  # the walk saw them


def test_a_test_folder_below_a_layer_mirrors_a_package_of_the_code() -> None:
    """`tests/unit/operators/risk/` tests `operators/risk/`: every folder below a layer's is one of its packages,
    and a subpackage's tests live in its folder (no `test_risk_*.py` beside it)."""
    unmirrored, misplaced = [], []
    for layer in PACKAGES:
        for folder in sorted(p for p in (UNIT / layer).rglob("*") if p.is_dir() and p.name != "__pycache__"):
            code = ROOT / layer / folder.relative_to(UNIT / layer)
            if not (code / "__init__.py").is_file():
                unmirrored.append(str(folder.relative_to(ROOT)))
        for package in sorted(p for p in (ROOT / layer).rglob("__init__.py") if p.parent != ROOT / layer):
            tests_here = UNIT / layer / package.parent.relative_to(ROOT / layer)
            beside = tests_here.parent.glob(f"test_{package.parent.name}_*.py")
            misplaced += [str(p.relative_to(ROOT)) for p in beside]
    assert unmirrored == [], "a test folder below a layer's names a package of that layer"
    assert misplaced == [], "a subpackage's tests go in its folder: tests/unit/operators/risk/test_rules.py"
