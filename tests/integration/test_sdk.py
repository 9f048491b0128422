"""The plugin SDK as a third party meets it: a generated plugin and the
out-of-tree example under examples/ are installed into a temp folder (never
into the environment) and run in a subprocess that sees them through their
entry points."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.util import load_config_from_str

import bertflow.api
from bertflow.training.config import make_config
from bertflow.errors import BertflowError
from bertflow.scaffold import new_plugin, plugin_names

pytestmark = pytest.mark.slow  # installs distributions into fresh virtual environments

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "bertflow-multiple-choice"


def install_to(target: Path, *dists: Path) -> dict:
    """pip install the distributions into ``target`` (each built from a copy beside it: a build writes
    build/ and .egg-info/ into its source folder, and the repository's is not the test's to write);
    RETURNS an environment that sees them."""
    copies = []
    for dist in dists:
        copies.append(target.parent / "src" / dist.name)
        shutil.copytree(dist, copies[-1], ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), *map(str, copies)], check=True, capture_output=True, text=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run(args, env, cwd=None):
    result = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_new_plugin_installs_and_passes_its_own_tests(tmp_path):
    plugin = new_plugin("intent-detection", tmp_path)
    assert (plugin / "setup.cfg").exists() and (plugin / "projects" / "intent_detection" / "project.yml").exists()
    env = install_to(tmp_path / "site", plugin)
    assert "intent_detection" in run(["-m", "bertflow", "plugins"], env)
    out = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], env, cwd=plugin)
    assert "4 passed" in out


def test_new_plugin_rejects_bad_names_and_existing_folders(tmp_path):
    for bad in ("Intent", "1abc", "a b", "", "x--y"):
        with pytest.raises(BertflowError, match="Invalid plugin name"):
            plugin_names(bad)
    new_plugin("sentiment", tmp_path)
    with pytest.raises(BertflowError, match="already exists.*--force"):
        new_plugin("sentiment", tmp_path)
    assert new_plugin("sentiment", tmp_path, force=True).exists()


def test_example_multiple_choice_plugin_end_to_end(tmp_path, tiny_bert_dir):
    env = install_to(tmp_path / "site", EXAMPLE)
    listing = run(["-m", "bertflow", "plugins"], env)
    assert "multiple_choice" in listing and "bertflow-multiple-choice" in listing
    cfg = tmp_path / "tc_mc.cfg"
    run(["-m", "bertflow", "init", "config", str(cfg), "--tasks", "textcat,multiple_choice",
         "--encoder", str(tiny_bert_dir)], env)
    assert load_config_from_str(cfg.read_text(), interpolate=False)["nlp"]["pipeline"] == [
        "encoder", "textcat", "multiple_choice"]
    # its own tests: it learns a toy set, trains from the generated config, and is
    # added to a frozen trained pipeline with the old heads' outputs bit-identical
    out = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")], env, cwd=tmp_path)
    assert "7 passed" in out


def test_init_config_is_valid_for_installed_heads(tiny_bert_dir):
    text = make_config(["textcat", "ner"], encoder=str(tiny_bert_dir), gpu=True)
    assert text.startswith("# bertflow training config")
    config = load_config_from_str(text)
    assert config["nlp"]["pipeline"] == ["encoder", "textcat", "ner"]
    assert config["components"]["encoder"]["model"]["mixed_precision"] is True
    assert config["corpora"]["train"]["@readers"] == "bertflow.Corpus.v1"
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    assert nlp.pipe_names == ["encoder", "textcat", "ner"]


def test_init_config_errors_name_the_fix(tmp_path):
    with pytest.raises(BertflowError, match=r"Unknown task\(s\) 'nope'. Installed tasks: .*ner.*textcat"):
        make_config(["textcat", "nope"])
    with pytest.raises(BertflowError, match="No tasks given"):
        make_config([" "])
    with pytest.raises(BertflowError, match="not a saved spaCy pipeline"):
        make_config(["textcat"], base=tmp_path)
    result = subprocess.run([sys.executable, "-m", "bertflow", "init", "config", "-", "--tasks", "nope"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "Unknown task(s) 'nope'" in result.stderr


def test_public_api_is_explicit_and_importable():
    for name in bertflow.api.__all__:
        obj = getattr(bertflow.api, name)
        assert obj.__doc__, f"bertflow.api.{name} has no docstring"
