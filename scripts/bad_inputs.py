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
    from bertflow.config import make_config
    from bertflow.loading import load_pipeline
    from bertflow.precision import package_pipeline
    from bertflow.encoder_names import resolve_encoder
    from bertflow.tiny import tiny_encoder_config, write_tiny_bert
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
    import srsly

    def crafted(name, edit):
        import shutil

        saved = tmp / "to_craft"
        if not saved.exists():
            textcat_nlp().to_disk(saved)
        target = tmp / name
        shutil.copytree(saved, target)
        if edit is None:
            return target
        outer = srsly.msgpack_loads((target / "encoder" / "model").read_bytes())
        node = next(i for i, shims in enumerate(outer["shims"]) if shims)
        inner = srsly.msgpack_loads(outer["shims"][node][0])
        edit(inner)
        outer["shims"][node][0] = srsly.msgpack_dumps(inner)
        (target / "encoder" / "model").write_bytes(srsly.msgpack_dumps(outer))
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

    # --- bertflow annotate (a user's files are never lost)
    from bertflow.annotate import annotate

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

    # --- data files
    from bertflow.convert import convert

    yield "convert", "a label the --label-map does not name", lambda: convert(
        "textcat", write("unmapped.tsv", "a fine film\t1\nan odd film\t2\n"), tmp / "o.spacy",
        label_map={"0": "NEGATIVE", "1": "POSITIVE"})
    yield "convert", "bytes that are not UTF-8 in a CoNLL file", lambda: convert(
        "ner", (tmp / "junk.conll").write_bytes(b"John B-PER\n\xff\xfe O\n") and tmp / "junk.conll", tmp / "o.spacy")
    yield "convert", "a CoNLL line without a tag, with --skip-bad (the summary)", lambda: convert(
        "ner", write("skip.conll", "John B-PER\nlives\nin O\n\nMary B-PER\n"), tmp / "o.spacy",
        skip_bad=True).summary()
    yield "convert", "an option the task's converter does not take", lambda: __import__(
        "bertflow.convert", fromlist=["parse_options"]).parse_options(
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
