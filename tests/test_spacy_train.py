"""The encoder trains from a spaCy config with `spacy train`, like every head will."""
import subprocess

import pytest
import sys
from pathlib import Path

import spacy
from spacy.cli.init_config import fill_config
from spacy.tokens import DocBin

from bertflow.testing.fixtures import run_cli

CONFIG = """
[paths]
train = null
dev = null
encoder = "minilm-l6"

[system]
gpu_allocator = "pytorch"
seed = 0

[nlp]
lang = "en"
pipeline = ["encoder","test_doc_probe"]
batch_size = 16

[components]

[components.encoder]
factory = "bertflow_encoder"

[components.encoder.model]
@architectures = "bertflow.Encoder.v1"
name = ${paths.encoder}
keep_layers = 2
mixed_precision = true

[components.encoder.model.get_windows]
@misc = "bertflow.strided_windows.v1"
window = 16
stride = 12

[components.test_doc_probe]
factory = "test_doc_probe"
layers = "mix"
n_layers = 2

[corpora]

[corpora.train]
@readers = "spacy.Corpus.v1"
path = ${paths.train}

[corpora.dev]
@readers = "spacy.Corpus.v1"
path = ${paths.dev}

[training]
train_corpus = "corpora.train"
dev_corpus = "corpora.dev"
max_steps = 30
eval_frequency = 10
patience = 0
dropout = 0.1
seed = ${system.seed}

[training.optimizer]
@optimizers = "Adam.v1"

[training.optimizer.learn_rate]
@schedules = "warmup_linear.v1"
warmup_steps = 3
total_steps = 30
initial_rate = 0.003

[training.batcher]
@batchers = "spacy.batch_by_sequence.v1"
size = 8

[initialize]
"""


def write_corpus(nlp, path: Path, n: int):
    db = DocBin(store_user_data=True)
    for i in range(n):
        label = i % 2
        text = "good great movie love it" if label else "bad terrible film hate it"
        doc = nlp.make_doc(f"{text} {i % 5}")
        doc.user_data["probe"] = label
        db.add(doc)
    db.to_disk(path)


@pytest.mark.slow
def test_spacy_train_from_config(tmp_path, tiny_bert_dir):
    nlp = spacy.blank("en")
    write_corpus(nlp, tmp_path / "train.spacy", 24)
    write_corpus(nlp, tmp_path / "dev.spacy", 8)
    (tmp_path / "base.cfg").write_text(CONFIG)
    code = Path(__file__).parent / "probe_heads.py"
    fill_config(tmp_path / "config.cfg", tmp_path / "base.cfg", silent=True)  # the probes: conftest imports them
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "train", str(tmp_path / "config.cfg"), "--output", str(tmp_path / "out"),
         "--code", str(code), "--gpu-id", "-1", "--paths.train", str(tmp_path / "train.spacy"),
         "--paths.dev", str(tmp_path / "dev.spacy"), "--paths.encoder", str(tiny_bert_dir)],
        capture_output=True, text=True, cwd=str(Path(__file__).parent),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "PrecisionWarning" not in result.stderr  # mixed_precision = true is a GPU switch, fine on a CPU
    trained = spacy.load(tmp_path / "out" / "model-best")
    assert trained.meta["performance"]["probe_acc"] == 1.0
    docs = list(trained.pipe(["good great movie love it 9", "bad terrible film hate it 9"]))
    assert [d.user_data["probe_pred"] for d in docs] == [1, 0]


def test_warmup_longer_than_training_warns(tiny_bert_dir):
    import pytest
    from thinc.api import Config

    from bertflow.encoder.component import check_schedule

    config = Config().from_str(CONFIG, interpolate=False)
    check_schedule(config)  # warmup 3 of 30 steps: fine
    config["training"]["optimizer"]["learn_rate"]["warmup_steps"] = 300
    with pytest.warns(UserWarning, match="warmup_steps = 300 is more than .* max_steps = 30"):
        check_schedule(config)


def test_lr_sweep_prints_a_config_error_as_one_message(tmp_path, tiny_bert_dir):
    """A user mistake in the config (here an unknown precision) ends bertflow lr-sweep with
    bertflow's message, not spacy train's traceback."""
    nlp = spacy.blank("en")
    write_corpus(nlp, tmp_path / "train.spacy", 8)
    (tmp_path / "base.cfg").write_text(CONFIG)
    code = Path(__file__).parent / "probe_heads.py"
    fill_config(tmp_path / "good.cfg", tmp_path / "base.cfg", silent=True)
    good = (tmp_path / "good.cfg").read_text()
    assert 'precision = "fp32"' in good
    (tmp_path / "bad.cfg").write_text(good.replace('precision = "fp32"', 'precision = "int4"'))
    result = run_cli(["lr-sweep", tmp_path / "bad.cfg", tmp_path / "sweep", "--lrs", "1e-4", "--code", code,
                      "--paths.train", tmp_path / "train.spacy", "--paths.dev", tmp_path / "train.spacy",
                      "--paths.encoder", tiny_bert_dir])
    assert result.code == 1
    assert "Traceback" not in result.stderr
    assert "✘ spacy train for lr=0.0001: [E006] Unknown precision 'int4' for the encoder" in result.stderr
