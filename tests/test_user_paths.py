"""What a user runs, run as a user would: fresh processes, no test helpers."""
import subprocess

import pytest
import sys

import spacy

from bertflow.testing.fixtures import tiny_encoder_config


def run_python(code: str, **env):
    import os

    full_env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env)


@pytest.mark.slow
def test_one_liner_on_the_default_model():
    """The command from the issue, verbatim, offline with the default model."""
    result = run_python(
        "import spacy; nlp=spacy.blank('en'); nlp.add_pipe('bertflow_encoder'); "
        "print(nlp('Hello world')._.trf_data)"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "TransformerData(" in result.stdout and "'[CLS]', 'hello', 'world', '[SEP]'" in result.stdout


@pytest.mark.slow
def test_saved_pipeline_loads_without_importing_bertflow(tmp_path, tiny_bert_dir):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", config=tiny_encoder_config(tiny_bert_dir, 16, 12))
    nlp.initialize()
    expected = nlp("the cat sat on the mat")._.trf_data.model_output["last_hidden_state"]
    nlp.to_disk(tmp_path / "pipe")
    result = run_python(
        "import sys, numpy, spacy\n"
        f"nlp = spacy.load({str(tmp_path / 'pipe')!r})\n"
        "doc = nlp('the cat sat on the mat')\n"
        f"numpy.save({str(tmp_path / 'out.npy')!r}, doc._.trf_data.model_output['last_hidden_state'])\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    import numpy

    numpy.testing.assert_allclose(numpy.load(tmp_path / "out.npy"), expected, atol=1e-6)


def test_bertflow_cli_entry_point():
    result = subprocess.run([sys.executable, "-m", "bertflow", "plugins", "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '"plugins"' in result.stdout
