"""The package's shape: every module imports on its own, the imports form no cycle and run one way (cli -> config
-> the commands -> shared parts), and a name is imported from the module that defines it, never handed on."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ragtrain"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
ENTRY = {"cli", "__main__"}  # the command line
COMMANDS = {"prepare", "train", "evaluate", "runreport", "tune", "merge"}  # what the command line calls, each with its config
BUILT_ON = {"tune": {"train"}}  # a command whose every step is another command's run (tune's trials are train runs)
CLI_READS = {"config", "options", "configfile", "errors", "diskerrors", *COMMANDS}  # parse flags (and --config), build a config, call one function


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def ragtrain_imports(module: ast.Module) -> list[tuple[str, list[str]]]:
    """(imported ragtrain module, names taken from it) for every import anywhere in the file, functions included."""
    found = []
    for node in ast.walk(module):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ragtrain":
            if node.module == "ragtrain":  # `from ragtrain import checkpoint as ckpt` takes modules
                found += [(f"ragtrain.{a.name}", []) if (PACKAGE / f"{a.name}.py").exists() else ("ragtrain", [a.name])
                          for a in node.names]
            else:
                found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == "ragtrain"]
    return found


def edges() -> dict[str, set[str]]:
    """module -> the ragtrain modules it imports."""
    graph = {}
    for name in MODULES:
        imported = {target.removeprefix("ragtrain.") for target, _ in ragtrain_imports(tree(PACKAGE / f"{name}.py"))}
        graph[name] = imported - {"ragtrain", name}
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


def test_imports_run_from_the_command_line_to_the_config_to_the_commands_to_shared_parts():
    graph = edges()
    assert graph["cli"] <= CLI_READS, graph["cli"] - CLI_READS  # the CLI holds no logic of its own
    for name, targets in graph.items():
        if name not in ENTRY:
            assert not targets & ENTRY, f"{name} imports the command line"
        if name != "cli":
            others = targets & COMMANDS - BUILT_ON.get(name, set())
            assert not others, f"{name} imports the command {sorted(others)}"
    for command in COMMANDS:
        assert "config" in graph[command], f"{command} takes its config"  # cli -> config -> command
    assert not graph["config"] & (COMMANDS | ENTRY)


@pytest.mark.parametrize("path", sorted([*PACKAGE.glob("*.py"), *(ROOT / "tests").glob("*.py"),
                                         *(ROOT / "scripts").glob("*.py")]), ids=lambda p: p.name)
def test_a_name_is_imported_from_the_module_that_defines_it(path):
    for module, names in ragtrain_imports(tree(path)):
        source = PACKAGE / f"{module.removeprefix('ragtrain.')}.py"
        if module == "ragtrain":
            source = PACKAGE / "__init__.py"
        defined = defined_names(source)
        handed_on = [name for name in names if name not in defined]
        assert not handed_on, f"{path.name} takes {handed_on} from {module}, which does not define them"


@pytest.mark.parametrize("name", MODULES)
def test_no_module_hands_on_what_it_imports(name):
    """No __all__ and no import kept only to be imported from here: every imported name is used in the module."""
    module = tree(PACKAGE / f"{name}.py")
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
