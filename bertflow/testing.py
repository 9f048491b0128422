"""Shared pytest fixtures for bertflow and its plugins (a ``pytest11`` entry
point, so every plugin's tests can use them without importing anything).

- ``tiny_bert_dir``: a 2-layer, 32-wide BERT with random weights and a small
  WordPiece vocabulary, written once per session to a temp dir (ms per forward).
- ``tiny_encoder_config``: encoder component config pointing at it.
- ``nlp_tiny``: a blank English pipeline with the encoder on the tiny BERT.
- ``fresh_plugin_manager``: a PluginManager with the hookspecs and no plugins.
"""
from pathlib import Path
from typing import Union

import pytest

from .tiny import TINY_WORDS, tiny_encoder_config, write_tiny_bert  # noqa: F401  (re-exported)


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
    from bertflow.plugins import create_plugin_manager

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


def run_project(project_dir: Union[str, Path], tmp_path: Union[str, Path], workflow: str = "all",
                **variables: object) -> Path:
    """Copy a spaCy project (without its outputs) to ``tmp_path`` and run a
    workflow as a user would: ``python -m spacy project run WORKFLOW . --vars.X Y``.
    Returns the copy's path; fails the test with the output's tail on error."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    project = Path(tmp_path) / Path(project_dir).name
    shutil.copytree(project_dir, project, ignore=shutil.ignore_patterns(
        "corpus", "training", "metrics", "packages", "project.lock"))
    args = [f"--vars.{key}={value}" for key, value in variables.items()]
    result = subprocess.run([sys.executable, "-m", "spacy", "project", "run", workflow, str(project), *args],
                            capture_output=True, text=True, cwd=str(project))
    if result.returncode != 0:
        pytest.fail(f"spacy project run {workflow} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return project
