"""Shared pytest fixtures for bertflow and its plugins (a ``pytest11`` entry
point, so every plugin's tests can use them without importing anything).

- ``tiny_bert_dir``: a 2-layer, 32-wide BERT with random weights and a small
  WordPiece vocabulary, written once per session to a temp dir (ms per forward).
- ``tiny_encoder_config``: encoder component config pointing at it.
- ``nlp_tiny``: a blank English pipeline with the encoder on the tiny BERT.
- ``fresh_plugin_manager``: a PluginManager with the hookspecs and no plugins.
"""
import string
from pathlib import Path

import pytest

TINY_WORDS = (
    "the a an of to and in is was for on with as by at from it that this be are were he she they "
    "we you i his her their apple google paris london berlin new york city company founded steve jobs "
    "john mary who what where when why how good bad great terrible movie film love hate not very "
    "question answer context world hello cat dog sat mat run ran fast slow big small red blue green"
).split()


def write_tiny_bert(path: Path, *, layers: int = 2, width: int = 32, max_positions: int = 512, seed: int = 0) -> Path:
    """Write a tiny random BERT (model, config, fast tokenizer) to ``path``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
    vocab += [w for w in TINY_WORDS if w not in vocab]
    vocab += ["##" + w for w in ("s", "ed", "ing", "ly", "er")]
    # A few CJK characters so their handling is exercised, the rest become [UNK].
    vocab += list("日本語中文")
    vocab = list(dict.fromkeys(vocab))
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf8")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True, model_max_length=max_positions)
    tokenizer.save_pretrained(str(path))
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=width, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=width * 2, max_position_embeddings=max_positions, type_vocab_size=2,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(path))
    return path


def tiny_encoder_config(model_dir, window: int = 256, stride: int = 192, keep_layers: int = 1, **model_args) -> dict:
    """Config overrides for ``nlp.add_pipe('bertflow_encoder', config=...)``."""
    model = {
        "@architectures": "bertflow.Encoder.v1",
        "name": str(model_dir),
        "keep_layers": keep_layers,
        "get_windows": {"@misc": "bertflow.strided_windows.v1", "window": window, "stride": stride},
    }
    model.update(model_args)
    return {"model": model}


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


def pytest_collection_modifyitems(config, items):
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


def run_project(project_dir, tmp_path, workflow: str = "all", **variables):
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
