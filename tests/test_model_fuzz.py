"""A fuzzer for saved pipelines: a pipeline with every built-in head, mutated
at random (a file truncated, deleted or replaced; bytes flipped inside a
msgpack file; a config value or a registered name changed; a file or code
planted the way a hostile author would), then opened the ways a user does
(``bertflow annotate``; ``bertflow check`` on fewer examples, it is slower).

What must hold for every mutation: no traceback (exit 0, or exit 1 with one
line); exit 0 only with every head's output in every record; nothing written
outside the run's own folder, temporary files included; planted code never
runs. ``MODEL_FUZZ_EXAMPLES`` sets the count (``make fuzz``: 500 through
annotate, 100 through check); ``make test`` runs a few. ``MODEL_FUZZ_LOG=FILE``
appends one JSON line per example (mutation, exit code, message).
"""
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import spacy
from hypothesis import HealthCheck, given, settings, strategies as st
from spacy.training import Example
from thinc.api import Config

from bertflow.testing.fixtures import edit_hf_shim_bytes, run_cli, tiny_encoder_config

EXAMPLES = int(os.environ.get("MODEL_FUZZ_EXAMPLES", "12"))
HEADS = ("textcat", "ner", "qa", "similarity", "mlm")
MSGPACK_FILES = ("model", "tokenizer", "key2row", "vectors")
NAMES = ["bertflow.Encoder.v1", "spacy-transformers.TransformerModel.v3", "spacy.TextCatBOW.v3",
         "spacy.Tok2Vec.v2", "bertflow.NoSuchThing.v1", "", "os.system"]
VALUES = [0, -1, 1e9, "x", True, None, [], {"trust_remote_code": True}, "../../etc/passwd"]


@pytest.fixture(scope="module")
def every_head(tiny_bert_dir, tmp_path_factory) -> Path:
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir, window=32, stride=24))
    for head in HEADS:
        nlp.add_pipe(f"bertflow_{head}", name=head)
    doc = nlp.make_doc("john lives in paris")
    doc.cats = {"POSITIVE": 1.0, "NEGATIVE": 0.0}
    doc.ents = [doc.char_span(0, 4, label="PER"), doc.char_span(14, 19, label="LOC")]
    nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc)])
    path = tmp_path_factory.mktemp("fuzz_model") / "model"
    nlp.to_disk(path)
    return path


def _files(model: Path):
    return sorted(p for p in model.rglob("*") if p.is_file())


def mutate(model: Path, draw, outside: Path) -> str:
    """Apply one random mutation to the pipeline at ``model``; RETURNS what was done."""
    kind = draw(st.sampled_from(["truncate", "delete", "replace", "flip", "config", "name", "plant_file",
                                 "plant_code"]))
    files = _files(model)
    if kind in ("truncate", "delete", "replace"):
        target = draw(st.sampled_from(files))
        data = target.read_bytes()
        if kind == "truncate":
            target.write_bytes(data[: draw(st.integers(0, max(0, len(data) - 1)))])
        elif kind == "delete":
            target.unlink()
        else:
            target.write_bytes(draw(st.binary(max_size=64)))
        return f"{kind} {target.relative_to(model)}"
    if kind == "flip":
        target = draw(st.sampled_from([f for f in files if f.name in MSGPACK_FILES]))
        data = bytearray(target.read_bytes())
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        target.write_bytes(bytes(data))
        return f"flip {target.relative_to(model)}"
    if kind in ("config", "name"):
        config = Config().from_disk(model / "config.cfg", interpolate=False)
        leaves = []

        def walk(node, trail):
            for key, value in node.items():
                if isinstance(value, dict):
                    walk(value, trail + [key])
                elif trail[:1] != ["nlp"] or key not in ("pipeline", "disabled"):
                    leaves.append((trail, key))

        walk(config, [])
        if kind == "name":
            leaves = [(t, k) for t, k in leaves if k.startswith("@")]
        trail, key = draw(st.sampled_from(leaves))
        node = config
        for part in trail:
            node = node[part]
        node[key] = draw(st.sampled_from(NAMES if kind == "name" else VALUES))
        try:
            (model / "config.cfg").write_text(config.to_str(interpolate=False))
        except Exception:  # noqa: BLE001  (a value the config format cannot hold: write it as text)
            (model / "config.cfg").write_text((model / "config.cfg").read_text() + f"\n{key} = {node[key]}\n")
        return f"{kind} [{'.'.join(trail)}] {key} = {node[key]!r}"
    # the hostile author's two moves: a tokenizer file named by an absolute path, and code to import
    def plant(inner):
        if kind == "plant_file":
            inner["tokenizer"][str(outside / "PWNED.txt")] = b"written by the model"
            return
        inner["tokenizer"]["kwargs"] = {"use_fast": True, "trust_remote_code": True}
        inner["tokenizer"]["evil.py"] = f"open({str(outside / 'CODE_RAN')!r}, 'w')\n".encode()
        config = json.loads(inner["tokenizer"]["tokenizer_config.json"])
        config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
        inner["tokenizer"]["tokenizer_config.json"] = json.dumps(config).encode()

    edit_hf_shim_bytes(model / "encoder" / "model", plant)
    return kind


def run_mutated(every_head: Path, data, command: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="bertflow-model-fuzz-"))
    try:
        outside, work, temp = root / "outside", root / "work", root / "tmp"
        for folder in (outside, work, temp):
            folder.mkdir()
        model = work / "model"
        shutil.copytree(every_head, model)
        what = mutate(model, data.draw, outside)
        (work / "in.jsonl").write_text('{"text": "john lives in paris"}\n'
                                       '{"text": "paris", "question": "where does john live?"}\n')
        args = {"annotate": ["annotate", model, work / "in.jsonl", work / "out.jsonl"],
                "check": ["check", model, "--n-per-class", "1"]}[command]
        before, cwd = tempfile.tempdir, os.getcwd()
        tempfile.tempdir = str(temp)
        os.chdir(work)
        try:
            result = run_cli(args)
        finally:
            tempfile.tempdir = before
            os.chdir(cwd)
        shown = f"after {what}: exit {result.code}\n{result.stderr[-3000:]}"
        if os.environ.get("MODEL_FUZZ_LOG"):  # what each mutation led to, for a summary of a long run
            with open(os.environ["MODEL_FUZZ_LOG"], "a", encoding="utf8") as log:
                first = result.stderr.strip().splitlines()[-1:] if result.code else ["ok"]
                log.write(json.dumps({"command": command, "mutation": what, "exit": result.code,
                                      "message": first[0][:160] if first else ""}) + "\n")
        assert "Traceback" not in result.stderr, shown
        assert result.code in (0, 1), shown
        if result.code == 1:
            assert len(result.stderr.strip().splitlines()) == 1, shown
        assert not list(outside.iterdir()), shown  # no file written outside, no planted code run
        assert not list(temp.iterdir()), shown  # temporary files removed
        assert {p.name for p in work.iterdir()} <= {"model", "in.jsonl", "out.jsonl",
                                                    "out.jsonl.bertflow-annotate.json"}, shown
        if result.code == 0 and command == "annotate":
            records = [json.loads(line) for line in (work / "out.jsonl").read_text().splitlines()]
            assert len(records) == 2, shown
            for rec in records:  # every head's output, or the row's own error
                assert "error" in rec or ("cats" in rec and "ents" in rec), shown
    finally:
        shutil.rmtree(root, ignore_errors=True)


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_model_directory_through_annotate(every_head, data):
    run_mutated(every_head, data, "annotate")


@settings(max_examples=max(2, EXAMPLES // 5), derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_model_directory_through_check(every_head, data):
    run_mutated(every_head, data, "check")


def test_the_unmutated_pipeline_annotates_with_every_head(every_head, tmp_path):
    """The fuzzer's baseline: the pipeline it mutates works, so a failure is the mutation's."""
    (tmp_path / "in.txt").write_text("john lives in paris\n")
    result = run_cli(["annotate", every_head, tmp_path / "in.txt", tmp_path / "out.jsonl"])
    assert result.code == 0, result.stderr
    rec = json.loads((tmp_path / "out.jsonl").read_text())
    assert "cats" in rec and "ents" in rec
