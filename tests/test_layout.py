"""The package's shape: wings (subpackages) that depend one way, every module importing on its own, no import
cycle, short modules and functions, and a name imported from the module that defines it, never handed on."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ragtrain"


def module_name(path: Path) -> str:
    """ragtrain/model/encoder.py -> 'model.encoder'; ragtrain/model/__init__.py -> 'model'."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


SOURCES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
MODULES = sorted(name for name, path in SOURCES.items() if path.name != "__init__.py")


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def ragtrain_imports(module: ast.Module) -> list[tuple[str, list[str]]]:
    """(imported ragtrain module, names taken from it) for every import anywhere in the file, functions included.
    `from ragtrain.training import checkpoint as ckpt` takes the module ragtrain.training.checkpoint."""
    found = []
    for node in ast.walk(module):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ragtrain":
            package = node.module.removeprefix("ragtrain").lstrip(".")
            for alias in node.names:
                candidate = f"{package}.{alias.name}".lstrip(".")
                if candidate in SOURCES and SOURCES[candidate].name != "__init__.py":
                    found.append((f"ragtrain.{candidate}", []))
                else:
                    found.append((node.module, [alias.name]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == "ragtrain"]
    return found


def edges() -> dict[str, set[str]]:
    """module -> the ragtrain modules it imports."""
    graph = {}
    for name in MODULES:
        imported = {target.removeprefix("ragtrain").lstrip(".") for target, _ in ragtrain_imports(tree(SOURCES[name]))}
        graph[name] = imported - {"", name}
    return graph


def defined_names(path: Path) -> set[str]:
    """What a module defines at its top level: functions, classes and assigned names (not what it imports)."""
    names = set()
    for node in tree(path).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):  # NAME = ... and A, B = ...
            names |= {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


@pytest.mark.slow  # starts an interpreter
def test_every_module_imports_alone():
    """Each module imported first, in an interpreter where no other ragtrain module is loaded yet: an import
    cycle or a name used before its module finished loading fails here, whatever order the CLI imports in."""
    script = ("import importlib, sys\n"
              f"for name in {MODULES!r}:\n"
              "    for loaded in [m for m in sys.modules if m == 'ragtrain' or m.startswith('ragtrain.')]:\n"
              "        del sys.modules[loaded]\n"
              "    importlib.import_module('ragtrain.' + name)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def test_imports_form_no_cycle():
    graph, done, path = edges(), set(), []

    def visit(name: str) -> None:
        if name in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        path.append(name)
        for target in sorted(graph.get(name, ())):
            visit(target)
        path.pop()
        done.add(name)

    for name in MODULES:
        visit(name)


@pytest.mark.parametrize("path", sorted([*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py"),
                                         *(ROOT / "scripts").glob("*.py")]), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_name_is_imported_from_the_module_that_defines_it(path):
    for module, names in ragtrain_imports(tree(path)):
        source = SOURCES.get(module.removeprefix("ragtrain").lstrip(".") or "__init__")
        assert source is not None, f"{path.name} imports {module}, which does not exist"
        handed_on = [name for name in names if name not in defined_names(source)]
        assert not handed_on, f"{path.name} takes {handed_on} from {module}, which does not define them"


@pytest.mark.parametrize("name", MODULES)
def test_no_module_hands_on_what_it_imports(name):
    """No __all__ and no import kept only to be imported from here: every imported name is used in the module."""
    module = tree(SOURCES[name])
    assert not any(isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets)
                   for node in module.body)
    used = {node.id for node in ast.walk(module) if isinstance(node, ast.Name)}
    used |= {node.value.id for node in ast.walk(module)
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)}
    for node in ast.walk(module):  # annotations are expressions too: a name used only in one counts
        if isinstance(node, (ast.Import, ast.ImportFrom)) and getattr(node, "module", None) != "__future__":
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                assert bound in used, f"{name} imports {bound} and never uses it"
