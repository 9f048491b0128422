"""Self-checks that keep the plugin contract documented, tested and stable."""
import inspect
import re
from pathlib import Path

import spacy

import bertflow  # noqa: F401
from bertflow.hooks import contract as hookspecs

ROOT = Path(__file__).parent.parent
SNAPSHOT = {
    "architectures": ["bertflow.Classifier.v1", "bertflow.DocPooler.v1", "bertflow.Encoder.v1",
                      "bertflow.EncoderListener.v1"],
    "misc": ["bertflow.strided_windows.v1"],
    "factories": ["bertflow_encoder"],
    "readers": ["bertflow.Corpus.v1", "bertflow.TextCorpus.v1"],
    "batchers": ["bertflow.batch_by_group.v1"],
    # bertflow.api: what a plugin may import. The core must keep these; it may add more.
    "api": ["EndpointSpec", "ServeSettings", "create_app", "running_server", "BertflowError", "Classifier", "ConversionReport", "DocPooler", "EncoderListener", "EncoderSpec", "HeadPipe", "TaskSpec",
            "annotation_mask", "batch_by_group", "binary_cross_entropy", "copy_encoder_inputs", "create_corpus_reader", "doc_pool",
            "encoder_output", "fail", "get_tasks", "hookimpl", "jsonl_rows", "listener_width", "malformed_row",
            "make_config", "mean_squared_error", "resolve_encoder", "run_or_fail", "softmax_cross_entropy", "tiny_encoder_config",
            "write_tiny_bert", "loss_denominator", "EngineSpec", "AnnotateJob", "ShardedOutput", "annotate_rows",
            "read_rows", "write_part", "input_files", "create_text_corpus_reader", "read_texts", "Tokenized",
            "wordpiece_words", "wordpiece_positions", "soft_target_loss", "cosine_distance_loss",
            "OutputStore", "DocOutput", "store_groups", "ragged_range", "run_project", "run_cli",
            "batch_rows", "same_form", "split_rows"],
}


def hook_names():
    return sorted(n for n in dir(hookspecs) if n.startswith("bertflow_"))


def test_every_hook_is_documented_and_tested():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    for name in SNAPSHOT["api"]:
        assert f"`{name}`" in docs, f"docs/plugins.md does not mention bertflow.api.{name}"
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert hook_names() == ["bertflow_cli", "bertflow_encoders", "bertflow_engines", "bertflow_functions",
                            "bertflow_serve_endpoints", "bertflow_tasks"]
    for name in hook_names():
        assert re.search(rf"^### {name}$", docs, re.M), f"docs/plugins.md lacks a '### {name}' section"
        assert f"def test_hook_{name}(" in tests, f"no test_hook_{name} test"


def test_registered_names_snapshot():
    for kind in ("architectures", "misc", "readers", "batchers"):
        table = getattr(spacy.registry, kind).get_all()
        found = sorted(n for n in table if n.startswith("bertflow."))
        missing = set(SNAPSHOT[kind]) - set(found)  # plugins may add names; the core's must stay
        assert not missing, f"registered {kind} disappeared: {sorted(missing)}"
    spacy.blank("en")  # a Language loads the spacy_factories entry points, as spacy.load does
    for factory in SNAPSHOT["factories"]:
        assert spacy.language.Language.has_factory(factory), f"factory {factory} disappeared"


def test_core_never_imports_a_plugin():
    """The core never imports a task plugin: plugins reach it only through hooks."""
    plugin_import = re.compile(r"^\s*(from|import)\s+bertflow_\w+", re.M)
    for path in (ROOT / "bertflow").rglob("*.py"):
        assert not plugin_import.search(path.read_text()), path


def test_public_api_snapshot_typed_and_documented():
    from bertflow import api

    missing = set(SNAPSHOT["api"]) - set(api.__all__)
    assert not missing, f"bertflow.api lost {sorted(missing)}: plugins rely on them"
    for name in api.__all__:
        obj = getattr(api, name)
        assert obj.__doc__, f"bertflow.api.{name} has no docstring"
        if inspect.isfunction(obj):
            sig = inspect.signature(obj)
            untyped = [p for p, v in sig.parameters.items() if v.annotation is inspect.Parameter.empty]
            assert not untyped and sig.return_annotation is not inspect.Signature.empty, (name, untyped)


def api_violations(source: str, user_code: bool = False) -> list:
    """Every import in ``source`` that reaches bertflow other than by a name of
    ``bertflow.api.__all__`` (``from bertflow.api import X``). ``user_code`` (a
    plugin's tests) may also ``import bertflow``, the namespace users call
    (``bertflow.ask``)."""
    import ast

    from bertflow import api

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bertflow":
            if node.module != "bertflow.api":
                found.append(f"from {node.module} import ...")
            else:
                found += [f"bertflow.api.{a.name} (not in __all__)" for a in node.names if a.name not in api.__all__]
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names
                      if a.name.split(".")[0] == "bertflow" and not (user_code and a.name == "bertflow")]
    return found


def plugin_sources():
    sources = list((ROOT / "plugins").rglob("*.py")) + list((ROOT / "examples").rglob("*.py"))
    sources += list((ROOT / "bertflow" / "templates").rglob("*.py.tmpl"))
    return [p for p in sources if "build" not in p.parts]


def test_plugins_use_only_the_public_api():
    """The built-in plugins, the example and the template (their tests too)
    import bertflow only as ``from bertflow.api import <a name in __all__>``."""
    sources = plugin_sources()
    assert len(sources) > 10
    for path in sources:
        text = path.read_text().replace("{{package}}", "bertflow_template").replace("{{task}}", "task")
        found = api_violations(text, user_code="tests" in path.parts)
        assert not found, f"{path}: {found}"


def test_the_api_check_catches_a_planted_import():
    clean = "from bertflow.api import HeadPipe, TaskSpec\n"
    assert api_violations(clean) == []
    assert api_violations("from bertflow.heads import HeadPipe\n") == ["from bertflow.heads import ..."]
    assert api_violations("import bertflow.data.corpus\n") == ["import bertflow.data.corpus"]
    assert api_violations("from bertflow.api import _WHERE\n") == ["bertflow.api._WHERE (not in __all__)"]
    assert api_violations("def f():\n    from bertflow import hookimpl\n") == ["from bertflow import ..."]
    assert api_violations("import bertflow\n") == ["import bertflow"]
    assert api_violations("import bertflow\n", user_code=True) == []
