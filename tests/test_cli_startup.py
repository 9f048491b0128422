"""The command starts without the deep-learning stack: ``--help``,
``--version`` and ``plugins`` import neither torch, transformers nor spaCy, so they
answer at once; a command that needs them imports them itself."""
import json
import subprocess
import sys

import pytest

PROBE = """
import sys
from bertflow.cli import main
sys.argv = ["bertflow", *{args!r}]
try:
    main()
except SystemExit as exit:
    code = exit.code
heavy = sorted(m for m in ("torch", "transformers", "spacy", "thinc", "spacy_transformers") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


def run(*args):
    result = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    return out[: out.rindex("HEAVY=")], out[out.rindex("HEAVY=") + 6:].strip()


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--version"], ["plugins"], ["plugins", "--json"],
                                  ["convert", "--help"], ["annotate", "-h"]])
def test_light_commands_import_no_deep_learning_library(args):
    _, heavy = run(*args)
    assert heavy == ""


def test_version_and_short_help():
    from bertflow import __version__

    out, _ = run("--version")
    assert out.strip() == f"bertflow {__version__}"
    out, _ = run("-h")
    assert "annotate" in out and "convert" in out and "bertflow plugins" in out


def test_plugins_lists_the_tasks_without_importing_them():
    out, heavy = run("plugins", "--json")
    tasks = {t["name"]: t for p in json.loads(out)["plugins"] for t in p["tasks"]}
    assert {"textcat", "ner", "qa", "similarity"} <= set(tasks)
    assert tasks["textcat"]["converters"] == ["jsonl", "tsv"]
    assert heavy == ""


def test_every_option_of_every_core_command_has_help():
    """No bare option in `bertflow COMMAND --help`."""
    import click
    import typer.main

    from bertflow.cli import app

    group = typer.main.get_command(app)
    missing = []

    def walk(command, path):
        for param in command.params:
            if isinstance(param, click.Option) and not param.help and "--help" not in param.opts:
                missing.append(f"{path} {param.opts[0]}")
            if isinstance(param, click.Argument) and not getattr(param, "help", None):
                missing.append(f"{path} {param.name}")
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(group, "bertflow")
    assert not missing
