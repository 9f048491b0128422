"""projects/textcat: `spacy project run all` on the shipped sample, as a user runs it."""
import json
from pathlib import Path

import pytest
import spacy

from bertflow.api import run_cli, run_project

pytestmark = pytest.mark.slow  # runs the project's workflow

PROJECT = Path(__file__).resolve().parents[3] / "projects" / "textcat"


def test_project_textcat_all_on_sample(tmp_path, tiny_bert_dir):
    project = run_project(PROJECT, tmp_path, encoder=tiny_bert_dir,
                          data_dir=PROJECT / "assets",  # absolute, as users pass their own data
                          max_steps=4, warmup_steps=1)
    metrics = json.loads((project / "metrics" / "textcat.json").read_text())
    assert 0.0 <= metrics["cats_acc"] <= 1.0 and "cats_macro_f" in metrics and "cats_macro_auc" in metrics
    wheels = list((project / "packages").glob("en_textcat_sst2-0.1.0/dist/*.whl"))
    assert len(wheels) == 1
    nlp = spacy.load(project / "training" / "textcat" / "model-best")
    cats = nlp("a warm , funny and touching film .").cats
    assert set(cats) == {"NEGATIVE", "POSITIVE"} and abs(sum(cats.values()) - 1) < 1e-5


def test_project_textcat_lr_sweep_keeps_best(tmp_path, tiny_bert_dir):
    from bertflow_textcat.convert import convert

    corpus = tmp_path / "corpus"
    label_map = {"0": "NEGATIVE", "1": "POSITIVE"}
    convert(PROJECT / "assets" / "sst2_sample_train.tsv", corpus / "train.spacy", label_map=label_map)
    convert(PROJECT / "assets" / "sst2_sample_dev.tsv", corpus / "dev.spacy", label_map=label_map)
    result = run_cli(
        ["lr-sweep", PROJECT / "configs" / "textcat.cfg", tmp_path / "sweep", "--lrs", "5e-5,2e-5",
         "--paths.train", corpus / "train.spacy", "--paths.dev", corpus / "dev.spacy", "--paths.encoder", tiny_bert_dir,
         "--training.max_steps", "2", "--training.optimizer.learn_rate.total_steps", "2",
         "--training.optimizer.learn_rate.warmup_steps", "1"])
    assert result.code == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [run["lr"] for run in summary["runs"]] == [5e-5, 2e-5]
    best = max(summary["runs"], key=lambda r: r["score"])
    assert summary["best_lr"] == best["lr"]
    assert (tmp_path / "sweep" / "best" / "meta.json").exists()
    table = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "(best)" in table and "cats_score" in table


def test_project_textcat_distill_workflow(tmp_path, tiny_bert_dir):
    """`spacy project run distill`: train the teacher, distill a 1-layer student, score it."""
    project = run_project(PROJECT, tmp_path, workflow="distill", encoder=tiny_bert_dir, max_steps=2, warmup_steps=1,
                          student_layers=1, distill_steps=2)
    student = spacy.load(project / "training" / "textcat-student")
    assert student.get_pipe("encoder").transformer.config.num_hidden_layers == 1
    assert student.meta["bertflow_distilled"]["layers"] == [1]  # the tiny teacher's last of 2 layers
    assert student.meta["bertflow_distilled"]["hidden_layers"] == "all"  # the project's layer-to-layer loss
    metrics = json.loads((project / "metrics" / "textcat-student.json").read_text())
    assert 0.0 <= metrics["cats_acc"] <= 1.0
    report = json.loads((project / "metrics" / "textcat-distill.json").read_text())
    assert report["distilled"] == ["textcat"] and report["steps"] == 2


def test_project_textcat_compress_workflow(tmp_path, tiny_bert_dir):
    """`spacy project run compress`: train, distil the encoder on the train texts, then the measured ladder."""
    project = run_project(PROJECT, tmp_path, workflow="compress", encoder=tiny_bert_dir, max_steps=2,
                          warmup_steps=1, student_layers=1, general_steps=2, distill_steps=2, max_loss=100)
    ladder = json.loads((project / "metrics" / "textcat-compress.json").read_text())
    assert [r["name"] for r in ladder["rungs"]][:2] == ["teacher", "teacher int8"]
    assert any(r["name"] == "student encoder-l1" and r["layers"] == 1 for r in ladder["rungs"])
    nlp = spacy.load(project / "training" / "textcat-compressed")
    assert set(nlp("a warm , funny and touching film .").cats) == {"NEGATIVE", "POSITIVE"}
