"""Data-parallel training (``bertflow train`` under torchrun, gloo on the CPU):
N ranks train step for step as one process on the whole batch."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from thinc.api import Config

from bertflow.api import loss_denominator, make_config, write_tiny_bert
from bertflow.training.distributed import share_of_batch

STEPS = 5
WORDS = "the a movie film was very not good bad great terrible apple google paris london steve jobs john mary city".split()
ENTS = {"apple": "ORG", "google": "ORG", "paris": "LOC", "london": "LOC", "steve": "PER", "john": "PER", "mary": "PER"}

FAIL_ON_RANK_1 = '''
import os
from spacy.util import registry

@registry.callbacks("test.fail_on_rank_1.v1")
def make_failing(step: int):
    def before_update(nlp, info):
        if os.environ.get("RANK") == "1" and info["step"] == step:
            raise RuntimeError("rank 1 fails on purpose")
    return before_update
'''


def _docs(nlp, n: int, rng: random.Random):
    """Docs of 3-14 words (so the ranks' shares differ in tokens) with cats and entities."""
    docs = []
    for _ in range(n):
        doc = nlp.make_doc(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))))
        doc.ents = [doc.char_span(t.idx, t.idx + len(t), label=ENTS[t.text]) for t in doc if t.text in ENTS]
        positive = sum(t.text in ("good", "great") for t in doc) >= sum(t.text in ("bad", "terrible") for t in doc)
        doc.cats = {"POSITIVE": float(positive), "NEGATIVE": float(not positive)}
        docs.append(doc)
    return docs


def _start(work: Path, nproc, out: str, *extra: str, config: str = "config.cfg") -> subprocess.Popen:
    """Start ``bertflow train`` (nproc None) or ``torchrun --nproc-per-node nproc -m bertflow train``;
    its output goes to files (several runs may go at once)."""
    head = [sys.executable, "-m", "bertflow"] if nproc is None else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "bertflow"]
    cmd = [*head, "train", config, "--output", out, "--paths.train", "train.spacy", "--paths.dev", "dev.spacy",
           "--training.dropout", "0.0", "--training.batcher.size", "16", "--training.max_steps", str(STEPS),
           "--training.eval_frequency", "1", "--training.optimizer.learn_rate.initial_rate", "0.003",
           "--training.logger.@loggers", "spacy.ConsoleLogger.v3", "--training.logger.progress_bar", "null",
           "--training.logger.output_file", f"{out}.jsonl", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    with open(work / f"{out}.stdout", "w") as stdout, open(work / f"{out}.stderr", "w") as stderr:
        return subprocess.Popen(cmd, cwd=work, env=env, stdout=stdout, stderr=stderr, text=True)


def _finish(work: Path, out: str, proc: subprocess.Popen, timeout: int = 300) -> subprocess.CompletedProcess:
    """Wait for a run started by ``_start`` (the timeout only turns a hang into a failure; runs take seconds)."""
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, (work / f"{out}.stdout").read_text(),
                                       (work / f"{out}.stderr").read_text())


def _launch(work: Path, nproc, out: str, *extra: str, config: str = "config.cfg", timeout: int = 300):
    return _finish(work, out, _start(work, nproc, out, *extra, config=config), timeout=timeout)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("ddp")
    write_tiny_bert(work / "bert", dropout=0.0)  # no dropout: the runs are deterministic
    nlp, rng = spacy.blank("en"), random.Random(0)
    DocBin(docs=_docs(nlp, 64, rng)).to_disk(work / "train.spacy")
    DocBin(docs=_docs(nlp, 12, rng)).to_disk(work / "dev.spacy")
    (work / "config.cfg").write_text(make_config(["textcat", "ner"], encoder=str(work / "bert"), max_steps=STEPS))
    return work


@pytest.fixture(scope="module")
def runs(work):
    started = {"one": _start(work, None, "one"), "two": _start(work, 2, "two"),
               "torchrun-one": _start(work, 1, "torchrun-one")}  # at once: each waits on its start-up for a while
    results = {name: _finish(work, name, proc) for name, proc in started.items()}
    for name, result in results.items():
        assert result.returncode == 0, f"{name}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return results


def _weights(path: Path) -> dict:
    """Every weight of the pipeline at ``path``: the heads' thinc parameters and the encoder's torch tensors."""
    nlp, out = spacy.load(path), {}
    for name in nlp.pipe_names:
        for i, node in enumerate(nlp.get_pipe(name).model.walk()):
            for param in node.param_names:
                if node.has_param(param):
                    out[(name, i, param)] = numpy.asarray(node.get_param(param))
            for shim in node.shims:
                for key, tensor in shim._model.state_dict().items():
                    out[(name, i, key)] = tensor.float().numpy()
    return out


def _losses(path: Path) -> list:
    return [json.loads(line)["losses"] for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_two_ranks_train_step_for_step_as_one_process(work, runs):
    one, two = _weights(work / "one" / "model-last"), _weights(work / "two" / "model-last")
    assert one.keys() == two.keys() and {key[0] for key in one} == {"encoder", "textcat", "ner"}
    assert sum(v.size for k, v in one.items() if k[0] == "encoder") > 10_000  # the torch weights are compared too
    for key in one:
        numpy.testing.assert_allclose(two[key], one[key], atol=1e-5, rtol=0, err_msg=str(key))
    steps_one, steps_two = _losses(work / "one.jsonl"), _losses(work / "two.jsonl")
    assert len(steps_one) == len(steps_two) == STEPS + 1
    for step, (a, b) in enumerate(zip(steps_one, steps_two)):
        assert a.keys() == b.keys() == {"encoder", "textcat", "ner"}
        for name in a:
            assert b[name] == pytest.approx(a[name], rel=1e-5, abs=1e-7), (step, name)
    assert "gradient averaging" in runs["two"].stderr


@pytest.mark.slow
def test_training_moved_the_weights(work, runs):
    """The equality above is not two untouched copies of the same initial weights."""
    from transformers import AutoModel

    start = AutoModel.from_pretrained(str(work / "bert"))
    trained = spacy.load(work / "two" / "model-last").get_pipe("encoder").model.transformer
    moved = max(float((p.detach() - q.detach()).abs().max()) for p, q in zip(start.parameters(), trained.parameters()))
    assert moved > 1e-3


@pytest.mark.slow
def test_only_rank_0_logs_and_writes(work, runs):
    out = runs["two"].stdout
    assert out.count("Pipeline: ['encoder', 'textcat', 'ner']") == 1  # one rank logs
    assert out.count("Saved pipeline to output directory") == 1
    assert sorted(p.name for p in (work / "two").iterdir()) == ["model-best", "model-last"]
    assert len((work / "two.jsonl").read_text().splitlines()) == STEPS + 1  # one logger wrote the file


@pytest.mark.slow
def test_torchrun_with_one_process_is_bertflow_train(work, runs):
    one, solo = _weights(work / "one" / "model-last"), _weights(work / "torchrun-one" / "model-last")
    assert one.keys() == solo.keys()
    for key in one:
        numpy.testing.assert_array_equal(solo[key], one[key], err_msg=str(key))


@pytest.mark.slow
def test_a_failing_rank_ends_the_job_with_its_error(work):
    config = Config().from_disk(work / "config.cfg", interpolate=False)
    config["training"]["before_update"] = {"@callbacks": "test.fail_on_rank_1.v1", "step": 2}
    config.to_disk(work / "fail.cfg")
    (work / "fail_code.py").write_text(FAIL_ON_RANK_1)
    result = _launch(work, 2, "failed", "--code", "fail_code.py", "--timeout", "60", config="fail.cfg")
    assert result.returncode != 0
    assert "rank 1 fails on purpose" in result.stdout + result.stderr


def test_a_share_keeps_groups_together_and_the_shares_cover_the_batch():
    batch = ["a1", "a2", "b", "c1", "c2", "c3", "d", "e", "f1", "f2"]
    group = lambda item: item[0] if len(item) > 1 else None  # noqa: E731
    shares = [share_of_batch(batch, r, 3, group) for r in range(3)]
    assert [x for share in shares for x in share] == batch
    for share in shares:
        assert share, shares
        for g in {group(x) for x in share} - {None}:
            assert sum(group(x) == g for x in share) == sum(group(x) == g for x in batch)
    assert [len(s) for s in (share_of_batch(list(range(16)), r, 2) for r in range(2))] == [8, 8]
    assert share_of_batch(["a1", "a2"], 1, 2, group) == []  # one group, two ranks: nothing to share


def test_loss_denominator_outside_distributed_training_is_the_count():
    assert loss_denominator(7) == 7.0
    assert loss_denominator(0) == 1.0
