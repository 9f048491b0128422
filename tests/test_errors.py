"""The error catalogues (the core's and each plugin's): every message shows a
code a user can search for, no two codes of a catalogue say the same, every
code is raised somewhere, the file lists them in order, and no plugin raises
an inline message."""
import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = sorted(p for p in (ROOT / "plugins").glob("*/bertflow_*") if p.is_dir() and not p.name.endswith(".egg-info"))
# (module with the catalogue, the sources that raise its codes, the code pattern)
CATALOGUES = [("bertflow.errors", [ROOT / "bertflow", ROOT / "scripts"], r"[EW]\d{3}")] + [
    (f"{p.name}.errors", [p], r"[A-Z]+\d{3}") for p in PLUGINS]


def codes(module: str, pattern: str):
    errors = importlib.import_module(module).Errors
    return errors, [name for name in vars(errors) if re.fullmatch(pattern, name)]


@pytest.mark.parametrize("module,sources,pattern", CATALOGUES)
def test_every_message_shows_its_code_once(module, sources, pattern):
    errors, names = codes(module, pattern)
    assert names, f"{module} has no codes"
    seen = {}
    for code in names:
        assert getattr(errors, code).startswith(f"[{code}] "), code
        text = vars(errors)[code]
        assert text not in seen, f"{code} repeats {seen.get(text)}"
        seen[text] = code


@pytest.mark.parametrize("module,sources,pattern", CATALOGUES)
def test_every_code_is_used_and_every_used_code_exists(module, sources, pattern):
    _, names = codes(module, pattern)
    used = set()
    for folder in sources:
        for path in folder.rglob("*.py"):
            if path.name != "errors.py" and "tests" not in path.parts:
                used |= set(re.findall(rf"Errors\.({pattern})\b", path.read_text(encoding="utf8")))
    assert sorted(set(names) - used) == [], "codes no code raises"
    assert sorted(used - set(names)) == [], "codes raised but not defined"


def test_core_codes_are_listed_in_order():
    _, names = codes("bertflow.errors", r"[EW]\d{3}")
    assert names == sorted(names, key=lambda c: (c[0] == "W", int(c[1:])))


@pytest.mark.parametrize("package", PLUGINS, ids=lambda p: p.name)
def test_plugins_raise_no_inline_message(package):
    """A BertflowError's message comes from the plugin's catalogue, never a literal or f-string."""
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "BertflowError" and node.args:
                assert not isinstance(node.args[0], (ast.Constant, ast.JoinedStr)), f"{path}:{node.lineno}"
