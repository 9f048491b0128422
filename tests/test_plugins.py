"""The plugin manager: hooks registered in-process and through entry points."""
import json
import textwrap

import pytest
from typer.testing import CliRunner

from bertflow import hookimpl
from bertflow.errors import BertflowError, PluginLoadWarning
from bertflow.hooks.manager import create_plugin_manager, describe_plugins, get_encoder_specs, get_tasks
from bertflow.encoder.names import resolve_encoder
from bertflow.hooks.specs import EncoderSpec, TaskSpec


class ToyPlugin:
    @hookimpl
    def bertflow_tasks(self):
        return [TaskSpec(name="toy", factory="toy_head", scorer="toy_scorer.v1",
                         converters={"jsonl": lambda *a: None}, metrics=("toy_acc",), description="a toy task")]

    @hookimpl
    def bertflow_encoders(self):
        return [EncoderSpec(name="toy-bert", locate=lambda: "/nonexistent/toy", description="toy")]


def test_hook_bertflow_tasks(fresh_plugin_manager):
    fresh_plugin_manager.register(ToyPlugin(), name="toy")
    tasks = get_tasks(fresh_plugin_manager)
    assert list(tasks) == ["toy"] and tasks["toy"].factory == "toy_head"


def test_hook_bertflow_encoders(fresh_plugin_manager, tiny_bert_dir):
    class EncPlugin:
        @hookimpl
        def bertflow_encoders(self):
            return [EncoderSpec(name="tiny", locate=lambda: tiny_bert_dir)]

    fresh_plugin_manager.register(EncPlugin(), name="enc")
    assert "tiny" in get_encoder_specs(fresh_plugin_manager)
    assert resolve_encoder("tiny", pm=fresh_plugin_manager) == str(tiny_bert_dir.absolute())


def test_hook_bertflow_functions(fresh_plugin_manager, monkeypatch):
    import bertflow
    from bertflow.hooks import manager as plugins

    def shout(text: str) -> str:
        return text.upper()

    class FnPlugin:
        @hookimpl
        def bertflow_functions(self):
            return {"shout": shout}

    fresh_plugin_manager.register(FnPlugin(), name="fn")
    assert plugins.get_functions(fresh_plugin_manager) == {"shout": shout}
    monkeypatch.setattr(plugins, "get_plugin_manager", lambda: fresh_plugin_manager)
    assert bertflow.shout("hi") == "HI"
    with pytest.raises(AttributeError, match="no attribute 'whisper'.*added by the installed plugins: shout"):
        bertflow.whisper

    class Clash:
        @hookimpl
        def bertflow_functions(self):
            return {"shout": str.lower}

    fresh_plugin_manager.register(Clash(), name="clash")
    with pytest.raises(BertflowError, match="shout"):
        plugins.get_functions(fresh_plugin_manager)


def test_hook_bertflow_cli(fresh_plugin_manager):
    import typer

    class CliPlugin:
        @hookimpl
        def bertflow_cli(self, app):
            @app.command("hello")
            def hello(name: str = "world"):
                typer.echo(f"hello {name}")

    fresh_plugin_manager.register(CliPlugin(), name="cli")
    app = typer.Typer()

    @app.callback()
    def root():
        pass

    fresh_plugin_manager.hook.bertflow_cli(app=app)
    result = CliRunner().invoke(app, ["hello", "--name", "bertflow"])
    assert result.exit_code == 0 and "hello bertflow" in result.output


def test_plugins_duplicate_task_names_error(fresh_plugin_manager):
    fresh_plugin_manager.register(ToyPlugin(), name="one")
    fresh_plugin_manager.register(ToyPlugin(), name="two")
    with pytest.raises(BertflowError, match="Two bertflow plugins define the task 'toy': one and two"):
        get_tasks(fresh_plugin_manager)


def make_distribution(root, dist, module, body, group_lines):
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist}-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text("[bertflow]\n" + group_lines + "\n")


@pytest.fixture
def installed_test_plugins(tmp_path, monkeypatch):
    """Two small distributions on sys.path, found through the 'bertflow' group:
    one good, one whose import fails."""
    make_distribution(tmp_path, "bertflow_goodplugin", "bertflow_goodplugin", """
        from bertflow import hookimpl
        from bertflow.hooks.specs import TaskSpec

        @hookimpl
        def bertflow_tasks():
            return [TaskSpec(name="good", factory="good_head", description="from an entry point")]
    """, "good = bertflow_goodplugin")
    make_distribution(tmp_path, "bertflow_brokenplugin", "bertflow_brokenplugin",
                      "raise ImportError('needs a package that is not installed')\n",
                      "broken = bertflow_brokenplugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_plugins_entry_point_discovery_and_broken_plugin(installed_test_plugins):
    with pytest.warns(PluginLoadWarning, match="'broken' was skipped: ImportError: needs a package"):
        pm = create_plugin_manager()
    assert "good" in get_tasks(pm)
    info = describe_plugins(pm)
    good = [p for p in info["plugins"] if p["name"] == "good"][0]
    assert good["distribution"] == "bertflow_goodplugin" and good["version"] == "0.3.1"
    assert good["hooks"] == ["bertflow_tasks"] and good["tasks"][0]["factory"] == "good_head"
    assert [f["name"] for f in info["failures"]] == ["broken"]


def test_plugins_bad_hook_signature_is_skipped(tmp_path, monkeypatch):
    make_distribution(tmp_path, "bertflow_badhook", "bertflow_badhook", """
        from bertflow import hookimpl

        @hookimpl
        def bertflow_tasks(unexpected_argument):
            return []
    """, "badhook = bertflow_badhook")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(PluginLoadWarning, match="'badhook' was skipped"):
        pm = create_plugin_manager()
    assert not pm.has_plugin("badhook")


def test_cli_plugins_json(installed_test_plugins, monkeypatch):
    import bertflow.hooks.manager as plugins_mod
    from bertflow.cli import app

    with pytest.warns(PluginLoadWarning):
        pm = create_plugin_manager()
    monkeypatch.setattr(plugins_mod, "get_plugin_manager", lambda: pm)
    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert "good" in [p["name"] for p in data["plugins"]]
    assert data["failures"][0]["name"] == "broken"
    table = CliRunner().invoke(app, ["plugins"])
    assert "task:      good  factory=good_head" in table.output and "broken" in table.output


def test_plugin_manager_is_lazy_and_cached():
    """Importing bertflow (and its public API) loads no plugin; the first getter does, once."""
    import subprocess
    import sys

    probe = ("import sys, bertflow, bertflow.api\n"
             "from bertflow.api import TaskSpec, hookimpl\n"
             "import bertflow.hooks.manager as p\n"
             "print(p.get_plugin_manager.cache_info().currsize, sorted(m for m in sys.modules if m.startswith('bertflow_')))\n"
             "p.get_tasks()\n"
             "print(p.get_plugin_manager.cache_info().currsize, p.get_plugin_manager() is p.get_plugin_manager())\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["0 []", "1 True"]


def test_hook_bertflow_engines(fresh_plugin_manager, tmp_path):
    """A third-party engine joins ``bertflow annotate --engine``; the built-in names stay the core's."""
    from bertflow.inference.engines import AnnotateJob, get_engines, run_annotate
    from bertflow.hooks.specs import EngineSpec

    seen = []

    class EnginePlugin:
        @hookimpl
        def bertflow_engines(self):
            return [EngineSpec("echo", lambda job: seen.append(job) or "report", "records the job")]

    fresh_plugin_manager.register(EnginePlugin(), name="echo-engine")
    assert set(get_engines(fresh_plugin_manager)) == {"local", "ray", "echo"}
    job = AnnotateJob(model="m", input=tmp_path / "in.txt", output=tmp_path / "out.jsonl", workers=4)
    assert run_annotate(job, "echo", pm=fresh_plugin_manager) == "report" and seen == [job]
    with pytest.raises(BertflowError, match="Unknown engine 'dask'.*echo, local, ray"):
        run_annotate(job, "dask", pm=fresh_plugin_manager)

    class Taker:
        @hookimpl
        def bertflow_engines(self):
            return [EngineSpec("ray", "somewhere:else")]

    fresh_plugin_manager.register(Taker(), name="taker")
    with pytest.raises(BertflowError, match="ray"):
        get_engines(fresh_plugin_manager)


def test_hook_bertflow_serve_endpoints(fresh_plugin_manager, nlp_tiny):
    """A plugin's endpoint joins ``bertflow serve`` for the pipelines it applies
    to; its BertflowError is the client's 422; the server's own names stay its own."""
    import httpx

    from bertflow.hooks.specs import EndpointSpec
    from bertflow.serve.app import ServeSettings, create_app
    from bertflow.testing.http import running_server

    def count(nlp, payload):
        if "words" not in payload:
            raise BertflowError("[ECHO001] give 'words'")
        return {"n": len(payload["words"]), "components": nlp.pipe_names}

    class EndpointPlugin:
        @hookimpl
        def bertflow_serve_endpoints(self, nlp):
            return [EndpointSpec("count", count, "counts words")] if nlp.pipe_names else []

    fresh_plugin_manager.register(EndpointPlugin(), name="count-endpoint")
    app = create_app(ServeSettings(model="in-memory"), nlp=nlp_tiny, pm=fresh_plugin_manager)
    with running_server(app) as url:
        assert httpx.post(f"{url}/count", json={"words": ["a", "b"]}).json() == {"n": 2, "components": nlp_tiny.pipe_names}
        bad = httpx.post(f"{url}/count", json={})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "ECHO001"
        assert httpx.post(f"{url}/count", json=["a"]).json()["error"]["code"] == "E154"  # not an object

    class Taker:
        @hookimpl
        def bertflow_serve_endpoints(self, nlp):
            return [EndpointSpec("annotate", count)]

    fresh_plugin_manager.register(Taker(), name="taker")
    with pytest.raises(BertflowError, match="annotate"):
        create_app(ServeSettings(model="in-memory"), nlp=nlp_tiny, pm=fresh_plugin_manager)
