"""Self-checks that keep the plugin contract documented, tested and stable."""
import re
from pathlib import Path

import spacy

import bertflow  # noqa: F401
from bertflow import hookspecs

ROOT = Path(__file__).parent.parent
SNAPSHOT = {
    "architectures": ["bertflow.Classifier.v1", "bertflow.DocPooler.v1", "bertflow.Encoder.v1",
                      "bertflow.EncoderListener.v1"],
    "misc": ["bertflow.strided_windows.v1"],
    "factories": ["bertflow_encoder"],
}


def hook_names():
    return sorted(n for n in dir(hookspecs) if n.startswith("bertflow_"))


def test_every_hook_is_documented_and_tested():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert hook_names() == ["bertflow_cli", "bertflow_encoders", "bertflow_tasks"]
    for name in hook_names():
        assert re.search(rf"^### {name}$", docs, re.M), f"docs/plugins.md lacks a '### {name}' section"
        assert f"def test_hook_{name}(" in tests, f"no test_hook_{name} test"


def test_registered_names_snapshot():
    for kind in ("architectures", "misc"):
        table = getattr(spacy.registry, kind).get_all()
        found = sorted(n for n in table if n.startswith("bertflow."))
        missing = set(SNAPSHOT[kind]) - set(found)  # plugins may add names; the core's must stay
        assert not missing, f"registered {kind} disappeared: {sorted(missing)}"
    factories = {n.split(".")[-1] for n in spacy.registry.factories.get_all() if "bertflow" in n}
    assert set(SNAPSHOT["factories"]) <= factories


def test_core_never_imports_a_plugin():
    """The core never imports a task plugin: plugins reach it only through hooks."""
    plugin_import = re.compile(r"^\s*(from|import)\s+bertflow_\w+", re.M)
    for path in (ROOT / "bertflow").rglob("*.py"):
        assert not plugin_import.search(path.read_text()), path
