"""``bertflow annotate`` never loses a user's data.

The input is never written, an unrelated OUTPUT is never touched, a resume
belongs to its input and model, rows are split on ``\\n`` only, a row that
can't be decoded is written with its error, and every record comes out once,
in input order. The property test at the end checks all of it over random
files with random interruptions (BERTFLOW_FUZZ_EXAMPLES, ``make fuzz``).
"""
import json
import os
import warnings

import pytest
import spacy
from spacy.language import Language
from hypothesis import HealthCheck, given, settings, strategies as st

from bertflow.inference.annotate import annotate, manifest_path
from bertflow.errors import BertflowError
from bertflow.testing.fixtures import tiny_encoder_config

FUZZ_EXAMPLES = int(os.environ.get("BERTFLOW_FUZZ_EXAMPLES", "40"))


def build(tiny_bert_dir, *heads):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir, window=32, stride=24))
    for head in heads:
        nlp.add_pipe(f"bertflow_{head}", name=head)
    from spacy.training import Example

    doc = nlp.make_doc("a good film")
    doc.cats = {"POSITIVE": 1.0, "NEGATIVE": 0.0}
    nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc)])
    return nlp


@pytest.fixture(scope="module")
def nlp(tiny_bert_dir):
    return build(tiny_bert_dir, "textcat")


@pytest.fixture(scope="module")
def nlp_qa(tiny_bert_dir):
    return build(tiny_bert_dir, "textcat", "qa")


@pytest.fixture(scope="module")
def saved_model(nlp, tmp_path_factory):
    path = tmp_path_factory.mktemp("annotate_model") / "model"
    nlp.to_disk(path)
    return path


def records(path):
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line]


def assert_same_records(got, expected):
    assert [r["row"] for r in got] == [r["row"] for r in expected]
    for a, b in zip(got, expected):
        assert {k: v for k, v in a.items() if k != "cats"} == {k: v for k, v in b.items() if k != "cats"}
        assert a.get("cats", {}) == pytest.approx(b.get("cats", {}), abs=1e-5)


def run(nlp, src, out, **kwargs):
    return annotate(nlp, src, out, progress=False, **kwargs)


@pytest.mark.parametrize("suffix,content", [(".jsonl", '{"text": "a good film"}\n{"text": "a bad one"}\n'),
                                            (".txt", "a good film\na bad one\n")])
def test_output_that_is_the_input_is_refused_and_the_input_kept(nlp, tmp_path, suffix, content):
    src = tmp_path / f"same{suffix}"
    src.write_text(content)
    with pytest.raises(BertflowError, match="is the input file"):
        run(nlp, src, src)
    with pytest.raises(BertflowError, match="is the input file"):
        run(nlp, src, tmp_path / "." / f"same{suffix}", overwrite=True)
    os.link(src, tmp_path / "hardlink.jsonl")
    with pytest.raises(BertflowError, match="is the input file"):
        run(nlp, src, tmp_path / "hardlink.jsonl")
    assert src.read_text() == content
    assert not manifest_path(src).exists()


def test_an_unrelated_existing_output_is_never_modified(nlp, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a good film\n")
    precious = tmp_path / "precious.jsonl"
    precious.write_text('{"mine": 1}\n{"row": 0, "text": "not from annotate"}\nnot json\n')
    before = precious.read_bytes()
    with pytest.raises(BertflowError, match="was not written by bertflow annotate.*--overwrite"):
        run(nlp, src, precious)
    assert precious.read_bytes() == before
    report = run(nlp, src, precious, overwrite=True)
    assert report.n_done == 1 and [r["row"] for r in records(precious)] == [0]


def test_resume_refuses_another_input(nlp, tmp_path):
    a, b, out = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "out.jsonl"
    a.write_text("one\ntwo\n")
    b.write_text("three\nfour\n")
    run(nlp, a, out)
    before = out.read_bytes()
    with pytest.raises(BertflowError, match="another input"):
        run(nlp, b, out)
    assert out.read_bytes() == before
    run(nlp, b, out, overwrite=True)
    assert [r["text"] for r in records(out)] == ["three", "four"]


def test_resume_refuses_another_model_or_options(nlp, nlp_qa, tmp_path):
    src, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    src.write_text("one\ntwo\n")
    run(nlp, src, out)
    with pytest.raises(BertflowError, match="another model"):
        run(nlp_qa, src, out)
    with pytest.raises(BertflowError, match="other options"):
        run(nlp, src, out, vectors=True)


def test_resume_splits_lines_on_newline_only(nlp, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    texts = ["next\u0085line", "line\u2028sep", "para\u2029sep", "form\x0cfeed", "plain", "carriage\rreturn"]
    src.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf8")
    run(nlp, src, out)
    first = out.read_bytes()
    assert [r["text"] for r in records(out)] == texts
    report = run(nlp, src, out)
    assert report.n_skipped == len(texts) and report.n_done == 0
    assert out.read_bytes() == first


def test_a_txt_line_keeps_unicode_line_separators(nlp, tmp_path):
    src, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    src.write_bytes("a\u2028b\r\nc\u0085d\n".encode("utf8"))
    run(nlp, src, out)
    assert [r["text"] for r in records(out)] == ["a\u2028b", "c\u0085d"]


@pytest.mark.parametrize("suffix,data,bad_row", [
    (".txt", b"ok\nCaf\xe9\nfine\n", 1),
    (".jsonl", b'{"text": "ok"}\n{"text": "Caf\xe9"}\n{"text": "fine"}\n', 1),
    (".csv", b'text\nok\nCaf\xe9\nfine\n', 1),
])
def test_a_row_that_is_not_utf8_is_written_with_its_error(nlp, tmp_path, suffix, data, bad_row):
    src, out = tmp_path / f"in{suffix}", tmp_path / "out.jsonl"
    src.write_bytes(data)
    report = run(nlp, src, out)
    recs = records(out)
    assert [r["row"] for r in recs] == [0, 1, 2]
    assert "not valid UTF-8" in recs[bad_row]["error"] and f"{src}:" in recs[bad_row]["error"]
    assert [r["text"] for r in recs if "error" not in r] == ["ok", "fine"]
    assert report.n_errors == 1 and report.n_done == 2


def test_the_byte_offset_of_a_bad_byte_is_named(nlp, tmp_path):
    src, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    src.write_bytes(b"ok\nCaf\xe9\n")
    run(nlp, src, out)
    assert "byte 0xe9 at byte offset 6" in records(out)[1]["error"]


def test_random_bytes_give_one_record_per_line(nlp, tmp_path):
    import random

    rng = random.Random(0)
    data = bytes(rng.randrange(256) for _ in range(4000))
    for suffix in (".txt", ".jsonl"):
        src, out = tmp_path / f"junk{suffix}", tmp_path / f"junk{suffix}.out.jsonl"
        src.write_bytes(data)
        run(nlp, src, out)
        lines = data.split(b"\n")
        expected = [i for i, line in enumerate(lines[:-1] if data.endswith(b"\n") else lines)
                    if suffix == ".txt" or line.strip()]
        assert [r["row"] for r in records(out)] == expected


@pytest.mark.parametrize("n_process", [1])  # 2 processes: tests/integration/test_multitask.py (a trained pipeline)
def test_unreadable_rows_keep_their_place_in_the_order(saved_model, tmp_path, n_process):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [json.dumps({"text": f"text number {i}"}) for i in range(8)]
    lines[5] = "{broken json"
    src.write_text("\n".join(lines) + "\n")
    run(str(saved_model), src, out, n_process=n_process, batch_size=2)
    recs = records(out)
    assert [r["row"] for r in recs] == list(range(8))
    assert "invalid JSON" in recs[5]["error"] and "at at" not in recs[5]["error"]


def test_a_question_without_a_pair_reading_head_is_ignored_with_a_warning(nlp, nlp_qa, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "paris is in france", "question": "where is paris?"}) + "\n")
    plain = tmp_path / "plain.txt"
    plain.write_text("paris is in france\n")
    with pytest.warns(UserWarning, match="no component of the pipeline reads doc._.text_pair"):
        run(nlp, src, tmp_path / "with_q.jsonl")
    run(nlp, plain, tmp_path / "without_q.jsonl")
    with_q, without_q = records(tmp_path / "with_q.jsonl")[0], records(tmp_path / "without_q.jsonl")[0]
    assert with_q["cats"] == without_q["cats"] and "question" not in with_q
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(nlp_qa, src, tmp_path / "qa.jsonl")
    assert records(tmp_path / "qa.jsonl")[0]["question"] == "where is paris?"


def test_an_empty_text_pair_is_no_pair(nlp_qa):
    a, b = nlp_qa.make_doc("paris is in france"), nlp_qa.make_doc("paris is in france")
    b._.text_pair = "  "
    a, b = nlp_qa(a), nlp_qa(b)
    assert a.cats == b.cats
    assert b._.trf_windows["pair_wordpieces"] == a._.trf_windows["pair_wordpieces"] == 0


def test_a_half_written_last_line_is_cut_and_redone(nlp, tmp_path):
    src, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    src.write_text("one\ntwo\nthree\n")
    run(nlp, src, out)
    full = out.read_bytes()
    out.write_bytes(full[: full.index(b"\n") + 10])  # row 0 and part of row 1
    report = run(nlp, src, out)
    assert report.n_skipped == 1 and report.n_done == 2
    assert out.read_bytes() == full


def test_ctrl_c_says_where_to_resume_and_exits_130(saved_model, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import bertflow.inference.annotate as module
    from bertflow.cli import app

    src, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    src.write_text("".join(f"text {i}\n" for i in range(6)))
    real = module.doc_record
    calls = []

    def interrupted(doc, vectors=False):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(doc, vectors)

    monkeypatch.setattr(module, "doc_record", interrupted)
    result = CliRunner().invoke(app, ["annotate", str(saved_model), str(src), str(out), "--batch-size", "1"])
    assert result.exit_code == 130
    assert "run the same command again to resume" in result.output
    monkeypatch.setattr(module, "doc_record", real)
    report = run(str(saved_model), src, out)
    assert report.n_skipped == 2 and [r["row"] for r in records(out)] == list(range(6))


# ---- property test: random files, random interruptions --------------------------------------------------

lines_strategy = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30).map(lambda t: t.encode("utf8")),
        st.text(max_size=20).map(lambda t: t.encode("utf-16", "surrogatepass")),
        st.text(alphabet=st.characters(max_codepoint=255), max_size=20).map(lambda t: t.encode("latin1")),
        st.binary(max_size=20),
        st.builds(lambda t: json.dumps({"text": t}).encode(), st.text(max_size=20)),
    ),
    max_size=25,
)


def as_read(data: bytes) -> bytes:
    """The bytes annotate splits into rows: a file that starts with a UTF-16/32 byte-order mark and is valid in
    that encoding throughout is its decoded text; any other file is its bytes."""
    for bom, encoding in ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"),
                          (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(encoding).encode("utf8")
            except UnicodeDecodeError:
                return data
    return data


@settings(max_examples=FUZZ_EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(lines=lines_strategy, trailing_newline=st.booleans(), fmt=st.sampled_from(["txt", "jsonl"]),
       cut=st.floats(0, 1), precious=st.binary(min_size=1, max_size=50))
@pytest.mark.slow
def test_fuzzed_annotate_gives_every_row_once_in_order(nlp, tmp_path_factory, lines, trailing_newline, fmt, cut,
                                                       precious):
    tmp = tmp_path_factory.mktemp("fuzz")
    data = b"\n".join(lines) + (b"\n" if trailing_newline and lines else b"")
    src, out, other = tmp / f"in.{fmt}", tmp / "out.jsonl", tmp / "other.jsonl"
    src.write_bytes(data)
    other.write_bytes(precious)
    text = as_read(data)
    raw_lines = text.split(b"\n")
    if text.endswith(b"\n") or not text:
        raw_lines = raw_lines[:-1]
    expected = [i for i, line in enumerate(raw_lines) if fmt == "txt" or line.strip(b" \t\r\n")]  # JSON whitespace

    run(nlp, src, out)
    full = out.read_bytes()
    assert [r["row"] for r in records(out)] == expected
    # a run killed at a random byte leaves a prefix of the output; resuming completes it: the complete lines
    # kept byte for byte, then the same records (scores to float noise: a row batched with other rows
    # is padded differently)
    prefix = full[: int(len(full) * cut)]
    out.write_bytes(prefix)
    run(nlp, src, out)
    kept = prefix[: prefix.rfind(b"\n") + 1]
    resumed = out.read_bytes()
    assert resumed.startswith(kept)
    assert_same_records(records(out), [json.loads(line) for line in full.split(b"\n") if line])
    # the input is untouched; an unrelated file is refused and left as it was
    assert src.read_bytes() == data
    with pytest.raises(BertflowError):
        run(nlp, src, other)
    assert other.read_bytes() == precious


def test_a_jsonl_line_of_non_json_whitespace_is_a_row_with_an_error(nlp, tmp_path):
    """Found by the fuzz test: a line holding only U+00A0 was skipped as blank, losing a row. Only JSON's own
    whitespace makes a blank line."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(b'{"text": "a"}\n \t\r\n\xc2\xa0\n{"text": "b"}\n')
    run(nlp, src, out)
    recs = records(out)
    assert [r["row"] for r in recs] == [0, 2, 3]
    assert "invalid JSON" in recs[1]["error"] and [recs[0]["text"], recs[2]["text"]] == ["a", "b"]


@Language.component("test_raises_on_boom")
def _raises_on_boom(doc):
    if "boom" in doc.text:
        raise RuntimeError("boom in this row")
    return doc


def test_a_row_a_component_fails_on_is_written_with_the_error_not_half_annotated(tiny_bert_dir, tmp_path):
    nlp = build(tiny_bert_dir, "textcat")
    nlp.add_pipe("test_raises_on_boom")
    src, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    src.write_text("a good film\nboom goes the film\nthe cat sat\n")
    report = annotate(nlp, src, out, progress=False)
    got = records(out)
    assert [r["row"] for r in got] == [0, 1, 2]
    assert got[1] == {"row": 1, "text": "boom goes the film", "error": "RuntimeError: boom in this row"}
    assert "cats" in got[0] and "cats" in got[2] and report.n_errors == 1
