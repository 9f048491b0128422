"""Shared pytest fixtures for bertflow and its plugins (a ``pytest11`` entry
point, so every plugin's tests can use them without importing anything).

- ``tiny_bert_dir``: a 2-layer, 32-wide BERT with random weights and a small
  WordPiece vocabulary, written once per session to a temp dir (ms per forward).
- ``tiny_encoder_config``: encoder component config pointing at it.
- ``nlp_tiny``: a blank English pipeline with the encoder on the tiny BERT.
- ``fresh_plugin_manager``: a PluginManager with the hookspecs and no plugins.
"""
from pathlib import Path
from typing import Callable, NamedTuple, Sequence, Union

import pytest

from bertflow.testing.tiny import TINY_WORDS, tiny_encoder_config, write_tiny_bert  # noqa: F401  (re-exported)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture
def nlp_tiny(tiny_bert_dir):
    import spacy

    import bertflow  # noqa: F401  (registers the factories)

    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", config=tiny_encoder_config(tiny_bert_dir))
    return nlp


@pytest.fixture
def fresh_plugin_manager():
    from bertflow.hooks.manager import create_plugin_manager

    return create_plugin_manager(load_entry_points=False)


def pytest_addoption(parser):
    group = parser.getgroup("bertflow")
    group.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_configure(config):
    for mark in ("integration: uses the real minilm-l6 model", "slow: skipped unless --runslow",
                 "gpu: needs CUDA; skipped without it"):
        config.addinivalue_line("markers", mark)


# test modules that run whole spaCy projects or install distributions: started first, so that with
# pytest-xdist (make test: -n auto --dist loadscope) no worker is left with one of them at the end
LONG_MODULES = ("project", "multitask", "sdk")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not any(word in item.path.name for word in LONG_MODULES))  # stable: order kept
    run_slow = config.getoption("--runslow")
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: run with --runslow"))
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


def torch_adamw(params, lr: float, weight_decay: float):
    """``torch.optim.AdamW`` with the decay ``bertflow.AdamW.v1`` applies (matrices and embeddings only):
    the reference its tests compare against."""
    import torch

    params = list(params)
    return torch.optim.AdamW([{"params": [p for p in params if p.dim() > 1], "weight_decay": weight_decay},
                              {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}],
                             lr=lr, eps=1e-8)


def run_project(project_dir: Union[str, Path], tmp_path: Union[str, Path], workflow: str = "all", *,
                in_process: bool = True, **variables: object) -> Path:
    """Copy a spaCy project (without its outputs) to ``tmp_path`` and run a
    workflow (or one command) with ``--vars.NAME VALUE`` overrides as
    ``spacy project run`` does. Returns the copy's path; fails the test with
    the failing command on error.

    ``in_process=True`` (default): weasel runs the workflow in this process —
    its variables, deps, outputs and lock file as usual — and each script line
    ``python -m bertflow ...`` or ``python -m spacy ...`` (also under a
    one-process ``python -m torch.distributed.run ... -m bertflow ...``) runs
    here with exactly those arguments, so a project test does not pay for a
    new interpreter that imports torch, spaCy and transformers per command.
    Other lines run as subprocesses.
    ``in_process=False``: ``python -m spacy project run WORKFLOW DIR --vars...``
    in a subprocess, exactly as a user types it."""
    import shutil
    import subprocess
    import sys

    project = Path(tmp_path) / Path(project_dir).name
    shutil.copytree(project_dir, project, ignore=shutil.ignore_patterns(
        "corpus", "training", "metrics", "packages", "project.lock"))
    args = [f"--vars.{key}={value}" for key, value in variables.items()]
    if in_process:
        _run_workflow_here(project, workflow, args)
        return project
    result = subprocess.run([sys.executable, "-m", "spacy", "project", "run", workflow, str(project), *args],
                            capture_output=True, text=True, cwd=str(project))
    if result.returncode != 0:
        pytest.fail(f"spacy project run {workflow} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return project


def _bertflow_main() -> None:
    from bertflow.cli import main

    main()


def _spacy_main() -> None:
    from spacy.cli import setup_cli

    setup_cli()


# what ``python -m MODULE`` runs, for the modules whose script lines run_project runs in this process
IN_PROCESS_MODULES = {"bertflow": _bertflow_main, "spacy": _spacy_main}


def _run_workflow_here(project: Path, workflow: str, args: list) -> None:
    from weasel.cli import run as weasel_run
    from weasel.util import parse_config_overrides

    subprocess_run = weasel_run.run_command

    def run_command(command, capture: bool = False):
        here = _module_command(command)
        if here is None:
            return subprocess_run(command, capture=capture)
        _run_module_here(*here, shown=" ".join(map(str, command)))

    weasel_run.run_command = run_command
    try:
        weasel_run.project_run(project, workflow, overrides=parse_config_overrides(args))
    except SystemExit as exit:  # weasel's own failures: a missing dependency, an unknown command
        if exit.code not in (0, None):
            pytest.fail(f"spacy project run {workflow} failed (exit code {exit.code}); see the output above")
    finally:
        weasel_run.run_command = subprocess_run


def _module_command(command: list):
    """(module, arguments) for a ``python -m MODULE ...`` line that can run in
    this process, else None. A one-process torch.distributed.run launch is the
    module it launches."""
    import sys

    if len(command) < 3 or command[0] != sys.executable or command[1] != "-m":
        return None
    module, args = command[2], list(command[3:])
    if module == "torch.distributed.run":
        if "-m" not in args:
            return None
        at = args.index("-m")
        launcher = " ".join(args[:at]).replace("_", "-").replace("=", " ").split()
        if "--nproc-per-node" not in launcher or launcher[launcher.index("--nproc-per-node") + 1] != "1":
            return None  # several ranks need their own processes
        module, args = args[at + 1], args[at + 2:]
    return (module, args) if module in IN_PROCESS_MODULES else None


def edit_hf_shim_bytes(model_file: Union[str, Path], edit: Callable[[dict], None]) -> None:
    """Rewrite, in place, the saved Hugging Face shim inside a component's
    ``model`` file: ``edit`` changes its inner msgpack (``config``, ``state``,
    ``tokenizer`` ...) as a dict. For tests that craft a hostile pipeline."""
    import srsly

    model_file = Path(model_file)
    outer = srsly.msgpack_loads(model_file.read_bytes())
    node = next(i for i, shims in enumerate(outer["shims"]) if shims)  # the HF wrapper's node
    inner = srsly.msgpack_loads(outer["shims"][node][0])
    edit(inner)
    outer["shims"][node][0] = srsly.msgpack_dumps(inner)
    model_file.write_bytes(srsly.msgpack_dumps(outer))


class CliResult(NamedTuple):
    """What a command line left: its exit code and its output."""
    code: int
    stdout: str
    stderr: str


def run_cli(args: Sequence[str], module: str = "bertflow") -> CliResult:
    """``python -m MODULE ARGS`` (``bertflow`` or ``spacy``) in this process,
    its output captured (click's ``CliRunner`` isolation: stdin, stdout and
    stderr swapped for buffers): the test of a command's arguments, messages
    and exit code without a new interpreter. The console entry point itself
    runs (``bertflow.cli.main``, with its error boundary), not only the typer
    app. An exception that escapes the command is what a user would see as a
    traceback: exit code 1 and the traceback on stderr. (Start-up behaviour of
    a fresh interpreter needs a subprocess.)"""
    import os
    import sys
    import traceback

    from click.testing import CliRunner

    argv, cwd = sys.argv, os.getcwd()
    code = 0
    try:
        with CliRunner().isolation() as (out, err, _):
            sys.argv = [module, *map(str, args)]
            try:
                IN_PROCESS_MODULES[module]()
            except SystemExit as exit:
                if exit.code is None or isinstance(exit.code, int):
                    code = exit.code or 0
                else:  # sys.exit("message"): Python prints the message and exits with 1
                    code = 1
                    sys.stderr.write(f"{exit.code}\n")
            except Exception:  # noqa: BLE001  (what a user would get as a traceback)
                code = 1
                sys.stderr.write(traceback.format_exc())
            sys.stdout.flush()
            sys.stderr.flush()
            stdout, stderr = out.getvalue().decode("utf8", "replace"), err.getvalue().decode("utf8", "replace")
    finally:
        sys.argv = argv
        os.chdir(cwd)
    return CliResult(code, stdout, stderr)


def _run_module_here(module: str, args: list, shown: str) -> None:
    """One script line of a workflow, in this process; its output is passed on (pytest shows it on failure)."""
    result = run_cli(args, module)
    output = result.stdout + result.stderr
    print(output)
    if result.code != 0:
        pytest.fail(f"`{shown}` exited with code {result.code}:\n{output[-3000:]}")
