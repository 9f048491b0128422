"""projects/textcat: `spacy project run all` on the shipped sample, as a user runs it."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import spacy

PROJECT = Path(__file__).resolve().parents[3] / "projects" / "textcat"


def test_project_textcat_all_on_sample(tmp_path, tiny_bert_dir):
    project = tmp_path / "textcat"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("corpus", "training", "metrics", "packages",
                                                                    "project.lock"))
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "project", "run", "all", str(project),
         "--vars.encoder", str(tiny_bert_dir), "--vars.max_steps", "4", "--vars.warmup_steps", "1"],
        capture_output=True, text=True, cwd=str(project),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((project / "metrics" / "textcat.json").read_text())
    assert 0.0 <= metrics["cats_acc"] <= 1.0 and "cats_macro_f" in metrics and "cats_macro_auc" in metrics
    wheels = list((project / "packages").glob("en_textcat_sst2-0.1.0/dist/*.whl"))
    assert len(wheels) == 1
    nlp = spacy.load(project / "training" / "textcat" / "model-best")
    cats = nlp("a warm , funny and touching film .").cats
    assert set(cats) == {"NEGATIVE", "POSITIVE"} and abs(sum(cats.values()) - 1) < 1e-5
