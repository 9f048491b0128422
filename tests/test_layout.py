"""The core's shape: no import cycle between modules or between packages, no
private name imported from another module, no import of a module that is not
there, and the library never imports the command line (``bertflow.cli``). The checker is tested on a planted package
too, so a green run means it looked."""
import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1] / "bertflow"
ALLOWED_CLI_USERS = {"bertflow.__main__", "bertflow.testing.fixtures"}  # the entry point and the CLI test helper


def module_name(path: Path, root: Path) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: Path):
    """(module, imported module, imported name or None) for every import of the package, at any depth."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    submodule = f"{target}.{alias.name}"
                    yield name, submodule if submodule in modules else target, alias.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield name, alias.name, None


def cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected groups of more than one node (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                other = stack.pop()
                group.append(other)
                if other == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def import_problems(root: Path) -> List[str]:
    top = root.name
    modules = {module_name(p, root) for p in root.rglob("*.py")}
    files: Dict[str, Set[str]] = {}
    packages: Dict[str, Set[str]] = {}
    problems = []
    for source, target, name in imports(root):
        if not target.startswith(top) or target == source:
            continue
        if target not in modules:
            problems.append(f"{source} imports {target}, which is no module of the package")
            continue
        if name and name.startswith("_") and not name.startswith("__"):
            problems.append(f"{source} imports the private name {name} from {target}")
        if target.startswith(f"{top}.cli") and not source.startswith(f"{top}.cli") and source not in ALLOWED_CLI_USERS:
            problems.append(f"{source} imports the command line ({target})")
        if target in modules:
            files.setdefault(source, set()).add(target)
            a, b = ".".join(source.split(".")[:2]), ".".join(target.split(".")[:2])
            if a != b:
                packages.setdefault(a, set()).add(b)
    problems += [f"import cycle between modules: {' <-> '.join(c)}" for c in cycles(files)]
    problems += [f"import cycle between packages: {' <-> '.join(c)}" for c in cycles(packages)]
    return problems


def test_the_core_has_no_cycles_private_imports_or_cli_imports():
    assert import_problems(ROOT) == []


def test_the_checker_finds_a_planted_cycle_and_private_import(tmp_path):
    pkg = tmp_path / "planted"
    (pkg / "cli").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import _helper\n")
    (pkg / "b.py").write_text("def _helper():\n    from . import a\n")
    (pkg / "c.py").write_text("from .cli import main\nfrom .gone import thing\n")
    problems = import_problems(pkg)
    assert "planted.a imports the private name _helper from planted.b" in problems
    assert "planted.c imports the command line (planted.cli)" in problems
    assert "import cycle between modules: planted.a <-> planted.b" in problems
    assert "planted.c imports planted.gone, which is no module of the package" in problems


# the packages from the bottom up: a package imports only from layers below its own
# (the entry points on top may import one another: the facade, the CLI, the test helpers)
LAYERS = [
    {"bertflow.errors", "bertflow.about"},
    {"bertflow.hooks"},
    {"bertflow.encoder"},
    {"bertflow.heads", "bertflow.files"},
    {"bertflow.data", "bertflow.inference", "bertflow.scaffold"},
    {"bertflow.training"},
    {"bertflow.compress", "bertflow.serve"},
    {"bertflow", "bertflow.api", "bertflow.cli", "bertflow.testing", "bertflow.__main__"},
]
MAX_TOP_LEVEL_MODULES = 8
MAX_MODULE_LINES = 450  # the error catalogue aside: it is one list of messages


def package_edges(root: Path) -> Set[tuple]:
    modules = {module_name(p, root) for p in root.rglob("*.py")}
    edges = set()
    for source, target, _ in imports(root):
        if target in modules and target != source:
            a, b = ".".join(source.split(".")[:2]), ".".join(target.split(".")[:2])
            if a != b:
                edges.add((a, b))
    return edges


def test_packages_import_only_downwards():
    layer = {name: i for i, names in enumerate(LAYERS) for name in names}
    packages = {".".join(module_name(p, ROOT).split(".")[:2]) for p in ROOT.rglob("*.py")}
    assert packages <= set(layer), f"packages with no layer in LAYERS: {sorted(packages - set(layer))}"
    top = len(LAYERS) - 1
    upward = sorted(f"{a} -> {b}" for a, b in package_edges(ROOT)
                    if layer[b] > layer[a] or (layer[b] == layer[a] and layer[a] != top))
    assert upward == []


def test_the_top_level_is_small_and_no_module_is_too_big():
    top_level = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top_level) <= MAX_TOP_LEVEL_MODULES, top_level
    big = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
           if p.name != "errors.py" and (n := len(p.read_text(encoding="utf8").splitlines())) > MAX_MODULE_LINES}
    assert big == {}


def test_the_layer_check_finds_an_upward_import(tmp_path):
    pkg = tmp_path / "bertflow"
    for sub in ("encoder", "training"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "encoder" / "model.py").write_text("from bertflow.training import config\n")
    (pkg / "training" / "config.py").write_text("")
    assert ("bertflow.encoder", "bertflow.training") in package_edges(pkg)
