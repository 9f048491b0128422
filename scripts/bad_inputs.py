"""Feed bertflow each kind of bad input a user may have and write what they
see into docs/RELIABILITY.md (between markers), so the table is produced by
the code it documents rather than typed by hand.

    python scripts/bad_inputs.py            # rewrite the table
    python scripts/bad_inputs.py --print    # only print it

Each case runs in this process on the tiny random BERT (seconds in all).
"""
import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "RELIABILITY.md"


def outcome(func) -> str:
    """The message a user sees: the error's text, or what the call returned."""
    try:
        result = func()
    except Exception as err:  # noqa: BLE001  (every outcome is reported)
        return f"{type(err).__name__}: {err}"
    return f"(no error) {result}"


def cases(tmp: Path):
    import spacy
    from spacy.tokens import DocBin

    import bertflow
    from bertflow.training.config import make_config
    from bertflow.files.loading import load_pipeline
    from bertflow.compress.guard import package_pipeline
    from bertflow.encoder.names import resolve_encoder
    from bertflow.testing.fixtures import edit_hf_shim_bytes, run_cli
    from bertflow.testing.tiny import tiny_encoder_config, write_tiny_bert
    from bertflow_ner.convert import convert as ner_convert
    from bertflow_qa.convert import convert as qa_convert
    from bertflow_similarity.convert import convert as sim_convert
    from bertflow_textcat.convert import convert as textcat_convert

    tiny = write_tiny_bert(tmp / "tiny")

    def write(name: str, text: str) -> Path:
        path = tmp / name
        path.write_text(text, encoding="utf8")
        return path

    def pipeline(*heads, model_dir=tiny):
        nlp = spacy.blank("en")
        nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(model_dir))
        for head in heads:
            nlp.add_pipe(f"bertflow_{head}", name=head)
        return nlp

    def textcat_nlp():
        from spacy.training import Example

        nlp = pipeline("textcat")
        ref = nlp.make_doc("a good film")
        ref.cats = {"POSITIVE": 1.0, "NEGATIVE": 0.0}
        nlp.initialize(lambda: [Example(nlp.make_doc(ref.text), ref)])
        return nlp

    # --- models and configs
    yield "models", "unknown encoder name", lambda: resolve_encoder("bert-huge-nonexistent")
    missing = tmp / "missing_files"
    missing.mkdir()
    (missing / "config.json").write_text((tiny / "config.json").read_text())
    yield "models", "model directory missing its weights and tokenizer", lambda: pipeline(model_dir=missing).initialize()
    corrupt = tmp / "corrupt"
    corrupt.mkdir()
    for f in tiny.iterdir():
        (corrupt / f.name).write_bytes(f.read_bytes())
    weights = next(p for p in corrupt.iterdir() if p.suffix in (".safetensors", ".bin"))
    weights.write_bytes(b"not a weights file" * 10)
    yield "models", "corrupt weights file", lambda: pipeline(model_dir=corrupt).initialize()
    yield "models", "unknown precision", lambda: spacy.blank("en").add_pipe(
        "bertflow_encoder", config=tiny_encoder_config(tiny, precision="int4"))
    yield "models", "unknown task in `bertflow init config`", lambda: make_config(["sentiment"], encoder=str(tiny))

    def changed_labels():
        nlp = textcat_nlp()
        nlp.get_pipe("textcat").add_label("NEUTRAL")

    yield "models", "label added after initialisation (resume with a new label set)", changed_labels

    def wide_head():
        nlp = textcat_nlp()
        wide = write_tiny_bert(tmp / "wide", width=64)
        other = pipeline(model_dir=wide)
        other.initialize()
        other.add_pipe("textcat", source=nlp)
        return [round(v, 3) for v in other("a good film").cats.values()]

    yield "models", "head trained on a 32-wide encoder sourced into a 64-wide one", wide_head

    def missing_plugin():
        nlp = textcat_nlp()
        nlp.to_disk(tmp / "saved")
        config = (tmp / "saved" / "config.cfg").read_text().replace('factory = "bertflow_textcat"',
                                                                    'factory = "bertflow_sentiment"')
        (tmp / "saved" / "config.cfg").write_text(config)
        return load_pipeline(tmp / "saved")

    yield "models", "pipeline saved with a plugin that is not installed", missing_plugin
    yield "models", "pipeline path that does not exist", lambda: load_pipeline(tmp / "no_such_pipeline")

    def refused_int8():
        nlp = textcat_nlp()
        nlp.to_disk(tmp / "for_int8")
        ref = nlp.make_doc("a good film")
        ref.cats = {"POSITIVE": 1.0, "NEGATIVE": 0.0}
        DocBin(docs=[ref]).to_disk(tmp / "dev.spacy")
        return package_pipeline(tmp / "for_int8", tmp / "packages", precision="int8", dev=[tmp / "dev.spacy"],
                                max_drop=-1.0)

    yield "models", "reduced-precision package that loses accuracy (`--max-drop` exceeded)", refused_int8
    yield "models", "fp16 package asked for on a CPU", lambda: package_pipeline(tmp / "for_int8", tmp / "packages",
                                                                                precision="fp16", dev=[tmp / "dev.spacy"])

    # --- pipeline directories a user downloads (loading never runs code or writes files)

    def crafted(name, edit):
        import shutil

        saved = tmp / "to_craft"
        if not saved.exists():
            textcat_nlp().to_disk(saved)
        target = tmp / name
        shutil.copytree(saved, target)
        if edit is not None:
            edit_hf_shim_bytes(target / "encoder" / "model", edit)
        return target

    yield "loading", "tokenizer file named by an absolute path (would write outside the model)", lambda: load_pipeline(
        crafted("abs", lambda m: m["tokenizer"].__setitem__("/tmp/pwned.txt", b"x")))
    yield "loading", "tokenizer kwargs with trust_remote_code (would run the model's code)", lambda: load_pipeline(
        crafted("remote", lambda m: m["tokenizer"].__setitem__("kwargs", {"use_fast": True, "trust_remote_code": True})))

    def pickled():
        import io
        import os

        import torch

        class Payload:
            def __reduce__(self):
                return (os.system, ("true",))

        buffer = io.BytesIO()
        torch.save({"w": Payload()}, buffer)
        return load_pipeline(crafted("pickle", lambda m: m.__setitem__("state", buffer.getvalue())))

    yield "loading", "weights that unpickle to code", pickled

    def truncated():
        target = crafted("truncated", None)
        model = target / "encoder" / "model"
        model.write_bytes(model.read_bytes()[:100])
        return load_pipeline(target)

    yield "loading", "truncated encoder/model", truncated

    def garbage_meta():
        target = crafted("garbage_meta", None)
        (target / "meta.json").write_text("{not json")
        return load_pipeline(target)

    yield "loading", "garbage meta.json", garbage_meta

    from bertflow.inference.annotate import annotate

    # --- bertflow annotate (a user's files are never lost)

    def annotate_quiet(src, out, **kwargs):
        return annotate(textcat_nlp(), src, out, progress=False, **kwargs)

    yield "annotate", "OUTPUT is the input file", lambda: annotate_quiet(write("same.jsonl", '{"text": "a"}\n'),
                                                                          tmp / "same.jsonl")
    yield "annotate", "OUTPUT is an existing file annotate did not write", lambda: annotate_quiet(
        write("in.txt", "a good film\n"), write("precious.jsonl", '{"mine": 1}\n'))

    def other_input():
        annotate_quiet(write("a.txt", "one\n"), tmp / "resumed.jsonl")
        return annotate_quiet(write("b.txt", "two\n"), tmp / "resumed.jsonl")

    yield "annotate", "re-run on an OUTPUT of another input", other_input

    def not_utf8():
        (tmp / "latin1.txt").write_bytes(b"ok\nCaf\xe9\n")
        annotate_quiet(tmp / "latin1.txt", tmp / "latin1.jsonl")
        return (tmp / "latin1.jsonl").read_text().splitlines()[1]

    yield "annotate", "a row that is not UTF-8 (the record written for it)", not_utf8

    def question_without_qa():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return annotate_quiet(write("q.jsonl", '{"text": "Paris is nice", "question": "Where?"}\n'),
                                  tmp / "q_out.jsonl")

    yield "annotate", "a question field, no component that reads it (a warning; the field is ignored)", \
        question_without_qa

    # --- trust at every edge: whatever loader a pipeline names, resume, locks, --force, encodings, one line
    from bertflow.errors import BertflowError

    class CommandFailed(BertflowError):
        """A command's non-zero exit, shown as the user sees it."""

    def cli(*args):
        """What the user sees in the terminal: the last line of stderr (raised when the exit code is not 0)."""
        result = run_cli([str(a) for a in args])
        lines = result.stderr.strip().splitlines()
        shown = f"exit {result.code}: {(lines or ['(nothing)'])[-1]}"
        if "Traceback" in result.stderr:
            shown += f" [a traceback of {len(lines)} lines]"
        if result.code != 0:
            raise CommandFailed(shown)
        return shown

    def stock_transformer(edit):
        """spacy-transformers' own `transformer` component, saved, its HF shim bytes edited."""
        import shutil

        saved = tmp / "stock"
        if not saved.exists():
            nlp = spacy.blank("en")
            nlp.add_pipe("transformer", config={"model": {
                "@architectures": "spacy-transformers.TransformerModel.v3", "name": str(tiny),
                "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 32, "stride": 24}}})
            nlp.initialize()
            nlp.to_disk(saved)
        target = tmp / f"stock-{len(list(tmp.glob('stock-*')))}"
        shutil.copytree(saved, target)
        edit_hf_shim_bytes(target / "transformer" / "model", edit)
        return target

    in_txt = write("edge_in.txt", "a good film\n")
    yield "edges", "spacy-transformers' own `transformer` component whose tokenizer names /tmp/PWNED.txt " \
        "(`bertflow annotate`)", lambda: cli("annotate", stock_transformer(
            lambda m: m["tokenizer"].__setitem__("/tmp/PWNED.txt", b"x")), in_txt, tmp / "edge1.jsonl")
    yield "edges", "the same with trust_remote_code and an evil.py (`bertflow check`)", lambda: cli(
        "check", stock_transformer(lambda m: m["tokenizer"].__setitem__(
            "kwargs", {"use_fast": True, "trust_remote_code": True})))

    def retrained_resume():
        import numpy

        nlp = textcat_nlp()
        nlp.to_disk(tmp / "mdl")
        src = write("resume.txt", "one\ntwo\nthree\n")
        annotate(tmp / "mdl", src, tmp / "resume.jsonl", progress=False)
        lines = (tmp / "resume.jsonl").read_bytes().split(b"\n")
        (tmp / "resume.jsonl").write_bytes(lines[0] + b"\n")  # killed after one row
        for node in nlp.get_pipe("textcat").model.walk():
            for name in node.param_names:
                if node.has_param(name):
                    node.set_param(name, node.get_param(name) + numpy.float32(0.5))
        nlp.to_disk(tmp / "mdl")  # retrained into the same folder, same config
        return annotate(tmp / "mdl", src, tmp / "resume.jsonl", progress=False)

    yield "edges", "resume after the model was retrained into the same folder (same config)", retrained_resume

    def locked():
        import os
        import subprocess

        holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            (tmp / "locked.jsonl.bertflow-lock").write_text(json.dumps(
                {"host": os.uname().nodename, "pid": holder.pid, "command": "bertflow annotate"}))
            return cli("annotate", tmp / "mdl", in_txt, tmp / "locked.jsonl")
        finally:
            holder.kill()
            holder.wait()

    yield "edges", "a second run on an OUTPUT another run is writing", locked

    def bracket_name():
        from bertflow.inference.engines import input_files

        (tmp / "br").mkdir()
        write("br/t[1].txt", "right\n")
        write("br/t1.txt", "WRONG\n")
        return [p.name for p in input_files(tmp / "br" / "t[1].txt")]

    yield "edges", "an input file named `t[1].txt` beside `t1.txt` (the files read)", bracket_name

    def spark_overwrite():
        folder = tmp / "x.parquet"
        folder.mkdir()
        write("x.parquet/part-00000-c0.snappy.parquet", "a")
        write("x.parquet/_SUCCESS", "")
        return cli("annotate", tmp / "mdl", in_txt, folder, "--engine", "ray", "--overwrite")

    yield "edges", "`--overwrite` on a folder another tool wrote (Spark parts, _SUCCESS)", spark_overwrite

    def distill_force():
        import shutil

        shutil.copytree(tmp / "mdl", tmp / "p")
        write("p/NOTES.md", "n")
        (tmp / "p" / "results").mkdir()
        line = cli("distill", tmp / "mdl", tmp / "p", "--data", in_txt, "--steps", "2", "--student-layers", "1",
                   "--force")
        return f"{line}; kept: NOTES.md {(tmp / 'p' / 'NOTES.md').exists()}, results/ {(tmp / 'p' / 'results').exists()}"

    yield "edges", "`distill --force` into a pipeline folder that also holds the user's NOTES.md and results/", \
        distill_force

    def utf16():
        (tmp / "u16.txt").write_bytes("hello world\nsecond line\n".encode("utf-16"))
        annotate_edge = annotate(tmp / "mdl", tmp / "u16.txt", tmp / "u16.jsonl", progress=False)
        return f"{annotate_edge.n_done} rows annotated; texts: " + ", ".join(
            repr(json.loads(line)["text"]) for line in (tmp / "u16.jsonl").read_text().splitlines())

    yield "edges", "UTF-16 input with a byte-order mark (`iconv -t UTF-16`)", utf16

    def damaged(how):
        import shutil

        target = tmp / f"damaged-{how}"
        shutil.copytree(tmp / "mdl", target)
        if how == "truncated":
            data = (target / "textcat" / "model").read_bytes()
            (target / "textcat" / "model").write_bytes(data[: len(data) // 2])
        elif how == "no_cfg":
            (target / "textcat" / "cfg").unlink()
        else:
            text = (target / "config.cfg").read_text()
            (target / "config.cfg").write_text("\n".join(l for l in text.splitlines() if not l.startswith("lang =")))
        return target

    yield "edges", "`evaluate` on a model whose textcat/model was truncated to half", lambda: cli(
        "evaluate", damaged("truncated"), tmp / "dev.spacy")
    yield "edges", "`evaluate` on a model without textcat/cfg (once: every metric 0.0, exit 0)", lambda: cli(
        "evaluate", damaged("no_cfg"), tmp / "dev.spacy")
    yield "edges", "`evaluate` on a model whose config.cfg lacks [nlp] lang", lambda: cli(
        "evaluate", damaged("no_lang"), tmp / "dev.spacy")
    yield "edges", "`distill --data garbage.spacy`", lambda: cli(
        "distill", tmp / "mdl", tmp / "S", "--data", write("garbage.spacy", "garbage\n"))

    def train_missing_corpus():
        cli("init", "config", tmp / "edge.cfg", "--tasks", "textcat", "--encoder", tiny, "--max-steps", "2")
        return cli("train", tmp / "edge.cfg", "--paths.train", tmp / "missing.spacy", "--paths.dev", tmp / "dev.spacy")

    yield "edges", "`bertflow train` with --paths.train missing.spacy", train_missing_corpus
    yield "edges", "`bertflow init config` over an existing, hand-edited config", lambda: cli(
        "init", "config", write("mine.cfg", "# mine\n"), "--tasks", "ner")
    yield "edges", "`bertflow convert` onto an existing file that is not a .spacy file", lambda: cli(
        "convert", "textcat", write("c.tsv", "sentence\tlabel\na film\t1\n"), write("notes.spacy", "mine"),
        "--label-map", "0=NEGATIVE,1=POSITIVE")

    def train_over_model():
        (tmp / "trained" / "model-best").mkdir(parents=True)
        write("trained/model-best/meta.json", "{}")
        return cli("train", tmp / "edge.cfg", "--output", tmp / "trained", "--paths.train", tmp / "dev.spacy",
                   "--paths.dev", tmp / "dev.spacy")

    yield "edges", "`bertflow train --output DIR` where DIR/model-best exists", train_over_model

    # --- data files
    from bertflow.data.convert import convert

    yield "convert", "a label the --label-map does not name", lambda: convert(
        "textcat", write("unmapped.tsv", "a fine film\t1\nan odd film\t2\n"), tmp / "o.spacy",
        label_map={"0": "NEGATIVE", "1": "POSITIVE"})
    yield "convert", "bytes that are not UTF-8 in a CoNLL file", lambda: convert(
        "ner", (tmp / "junk.conll").write_bytes(b"John B-PER\n\xff\xfe O\n") and tmp / "junk.conll", tmp / "o.spacy")
    yield "convert", "a CoNLL line without a tag, with --skip-bad (the summary)", lambda: convert(
        "ner", write("skip.conll", "John B-PER\nlives\nin O\n\nMary B-PER\n"), tmp / "o.spacy",
        skip_bad=True).summary()
    yield "convert", "an option the task's converter does not take", lambda: __import__(
        "bertflow.data.convert", fromlist=["parse_options"]).parse_options(
        bertflow.get_tasks()["textcat"].converter("tsv"), ["--mode", "cross"], "textcat")

    def long_warmup():
        import warnings

        from thinc.api import Config

        from bertflow.encoder.component import check_schedule

        config = Config({"training": {"max_steps": 100, "optimizer": {"learn_rate": {"warmup_steps": 250}}}})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_schedule(config)

    yield "config", "warmup_steps longer than max_steps (a warning)", long_warmup
    yield "textcat convert", "TSV row with a wrong column count", lambda: textcat_convert(
        write("cols.tsv", "sentence\tlabel\na fine film\t1\nno label here\n"), tmp / "o.spacy")
    yield "textcat convert", "JSONL line that is not JSON", lambda: textcat_convert(
        write("bad.jsonl", '{"text": "ok", "label": "POS"}\n{"text": "broken",\n'), tmp / "o.spacy")
    yield "textcat convert", "label outside the given label set", lambda: textcat_convert(
        write("lab.tsv", "sentence\tlabel\na film\t7\n"), tmp / "o.spacy", labels=["0", "1"])
    yield "textcat convert", "empty file", lambda: textcat_convert(write("empty.tsv", ""), tmp / "o.spacy")
    yield "textcat convert", "bad rows skipped with --skip-bad (the summary)", lambda: textcat_convert(
        write("skip.tsv", "sentence\tlabel\na fine film\t1\nno label here\n"), tmp / "o.spacy", skip_bad=True).summary()
    yield "ner convert", "CoNLL line without a tag", lambda: ner_convert(
        write("bad.conll", "John B-PER\nlives\nin O\n"), tmp / "o.spacy")
    yield "ner convert", "JSONL entity not on token boundaries (misaligned gold span)", lambda: ner_convert(
        write("mis.jsonl", json.dumps({"text": "John lives in Paris.", "entities": [[0, 3, "PER"]]}) + "\n"),
        tmp / "o.spacy")
    yield "ner convert", "entity offsets past the end of the text", lambda: ner_convert(
        write("far.jsonl", json.dumps({"text": "John", "entities": [[0, 40, "PER"]]}) + "\n"), tmp / "o.spacy")
    yield "similarity convert", "STS-B TSV with a non-numeric score", lambda: sim_convert(
        write("sts.tsv", "index\tsentence1\tsentence2\tscore\n0\ta man\ta woman\thigh\n"), tmp / "o.spacy")
    squad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 3}]}]}]}]}
    yield "qa convert", "answer text not at its stated offset", lambda: qa_convert(
        write("squad.json", json.dumps(squad)), tmp / "o.spacy")
    yield "qa convert", "file that is not JSON", lambda: qa_convert(write("squad_bad.json", "{\"data\": [\n"), tmp / "o.spacy")

    # --- text (none of these is an error; the outputs stay valid)
    nlp = textcat_nlp()

    def run(text):
        doc = nlp(text)
        return f"{len(doc)} tokens, {doc._.trf_windows['n_windows'] if doc._.trf_windows else 0} window(s), text kept: {doc.text == text}"

    yield "text", "empty text", lambda: run("")
    yield "text", "whitespace-only text", lambda: run(" \n\t ")
    yield "text", "100,000-character text (longer than the model's window)", lambda: run("the cat sat. " * 7693)
    yield "text", "CJK, emoji and ZWJ sequences", lambda: run("日本語のテキスト 👩\u200d👩\u200d👧 🇯🇵")
    yield "text", "control and zero-width characters only", lambda: run("\x00\x07\u200b\u200d")
    _ = bertflow  # imported for its factories


def table(tmp: Path) -> str:
    rows = ["| where | bad input | what the user sees |", "|---|---|---|"]
    for where, name, func in cases(tmp):
        message = re.sub(r"\s+", " ", outcome(func)).strip().replace("|", "\\|")
        message = message.replace(str(tmp), "…")
        rows.append(f"| {where} | {name} | {message[:600]} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print", action="store_true", help="print the table, don't write docs/RELIABILITY.md")
    args = parser.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        body = table(Path(tmp))
    if args.print:
        print(body)
        return
    start, end = "<!-- bad-inputs:start -->", "<!-- bad-inputs:end -->"
    text = DOC.read_text()
    DOC.write_text(re.sub(re.escape(start) + ".*?" + re.escape(end), lambda m: f"{start}\n{body}\n{end}", text,
                          flags=re.S))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    sys.exit(main())
