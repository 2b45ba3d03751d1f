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
# the package's own __init__ is the Python API (prepare_data, train, evaluate): checked as a module too
CHECKED = MODULES + ["__init__"]


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
    for name in CHECKED:  # `from ragtrain import X` imports the package's __init__
        imported = {target.removeprefix("ragtrain").lstrip(".") or "__init__"
                    for target, _ in ragtrain_imports(tree(SOURCES[name]))}
        graph[name] = imported - {name}
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

    for name in CHECKED:
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


# ---- wings: which may import which. Data flows cli -> config -> commands -> the wings -> files on disk; a wing
# imports only those below it, so each can be read (and tested) with what it stands on.
FOUNDATION = {"version", "errors", "messages"}  # any module may import these; they import no other ragtrain module
MAY_IMPORT = {
    "files": set(),
    "model": {"files"},
    "retrieval": {"files", "model"},
    "config": {"files", "model", "retrieval"},  # the choices and defaults its options name
    "data": {"files", "model", "retrieval", "config"},
    "generation": {"files", "model", "retrieval", "config", "data"},
    "training": {"files", "model", "retrieval", "config", "data"},
    "tuning": {"files", "config", "data"},  # the kind of the triples decides the first trial
    "reporting": {"files", "config", "retrieval", "tuning"},
    "commands": {"files", "model", "retrieval", "config", "data", "generation", "training", "tuning", "reporting"},
    "clihelp": set(),  # how --help lays out a command: typer and rich only
    "cli": {"config", "commands", "files", "clihelp"},
    "__main__": {"cli"},
    # the Python API: each function runs its command (imported when called) and reads back what it wrote; nothing
    # imports the API, so `import ragtrain` stays light and no wing can reach the commands through it
    "__init__": {"config", "commands", "files", "model"},
}
# a command may run another's steps only where they are that command's: tune's trials are train runs
COMMAND_IMPORTS = {"tune": {"train", "preflight"}, "preflight": set()}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def wing_of(module: str) -> str:
    return module.split(".")[0]


def test_every_wing_is_a_package_that_says_what_it_does():
    for wing in MAY_IMPORT:
        if (PACKAGE / wing).is_dir():
            doc = ast.get_docstring(tree(PACKAGE / wing / "__init__.py"))
            assert doc and len(doc.split()) >= 15, f"{wing}/__init__.py needs a paragraph saying what the wing does"
    loose = {name for name in MODULES if "." not in name} - FOUNDATION - set(MAY_IMPORT)
    assert not loose, f"modules outside every wing: {sorted(loose)}"


def test_wings_import_only_the_wings_below_them():
    for name, targets in edges().items():
        for target in targets:
            source_wing, target_wing = wing_of(name), wing_of(target)
            if source_wing == target_wing or target_wing in FOUNDATION:
                continue
            assert source_wing not in FOUNDATION, f"{name} is a foundation module and imports {target}"
            assert target_wing in MAY_IMPORT[source_wing], f"{name} ({source_wing}) imports {target} ({target_wing})"


def test_a_command_imports_no_other_command_but_what_it_is_built_on():
    for name, targets in edges().items():
        if wing_of(name) != "commands":
            continue
        command = name.split(".")[1]
        others = {t.split(".")[1] for t in targets if wing_of(t) == "commands"}
        allowed = COMMAND_IMPORTS.get(command, {"preflight"})
        assert others <= allowed, f"{name} imports the command(s) {sorted(others - allowed)}"


@pytest.mark.parametrize("name", CHECKED)
def test_modules_and_functions_are_short(name):
    source = SOURCES[name]
    assert len(source.read_text().splitlines()) <= MAX_MODULE_LINES, f"{name} is over {MAX_MODULE_LINES} lines; split it"
    for node in ast.walk(tree(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            assert node.end_lineno - start + 1 <= MAX_FUNCTION_LINES, f"{name}.{node.name} is over {MAX_FUNCTION_LINES} lines"


TEXT_CONTRACT_PARAMETERS = {"max_length", "max_seq_length", "query_prompt", "document_prompt", "prompt", "prompts"}


@pytest.mark.parametrize("name", [m for m in MODULES if wing_of(m) != "model"])
def test_only_the_model_wing_takes_a_length_or_a_prompt(name):
    """How text becomes a vector is the encoder's to say (model.settings): nothing outside the model wing is handed a
    length or a prompt to embed with, so no caller can embed otherwise than the model does."""
    for node in ast.walk(tree(SOURCES[name])):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            names = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
            taken = names & TEXT_CONTRACT_PARAMETERS
            assert not taken, f"{name}.{getattr(node, 'name', 'lambda')} takes {sorted(taken)}"
