"""``bertflow annotate``: stream texts through a pipeline into JSONL.

Input: ``.txt`` (one text per line), ``.jsonl`` (objects with a text field,
optionally a question and an id) or ``.csv``/``.tsv`` (a header naming the
columns). Records are split on ``\n`` only (a ``\r\n`` ending loses its
``\r``); U+2028 and friends stay inside the text. The input is opened
read-only and must not be OUTPUT.

Output: one JSON object per input row, in input order: ``row`` (0-based
input row), ``id`` (when given), ``text``, ``cats``, ``ents`` (character
offsets), ``spans`` (every ``doc.spans`` group, e.g. QA answers with their
scores), ``question`` (when given and a component of the pipeline reads
``doc._.text_pair``; otherwise it is ignored with a warning), ``vector``
(with ``vectors=True``) — or ``error`` for a row that could not be read (not
UTF-8, not JSON, too few columns: with its line and byte offset) or
processed. Nothing is dropped: a batch that fails is retried row by row, and
each row that still fails is written with its error.

Resume: beside OUTPUT a manifest (``OUTPUT.bertflow-annotate.json``) records
the input (path, size, content fingerprint), the model (name, version,
config fingerprint) and the options that shape a record. Re-running with the
same of all three continues where the last run stopped (a half-written last
line is cut off); anything else is refused, and so is an existing OUTPUT that
has no manifest, unless ``overwrite=True`` starts it again.

Memory stays flat over any length of input: rows are read lazily and run in
chunks of ``chunk_size`` inside ``nlp.memory_zone()``, so the strings of the
texts do not pile up in the vocab.
"""
import csv
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import raise_error

from bertflow.files.raw import jsonl_rows, open_utf8, text_lines
from bertflow.errors import BertflowError, Errors
from bertflow.files.loading import load_pipeline
from bertflow.files.outputs import output_lock

FORMATS = ("txt", "jsonl", "csv", "tsv")
MANIFEST_SUFFIX = ".bertflow-annotate.json"
MANIFEST_VERSION = 1


@dataclass
class AnnotateReport:
    n_rows: int = 0
    n_done: int = 0
    n_skipped: int = 0  # already in OUTPUT
    n_errors: int = 0
    errors: List[str] = field(default_factory=list)

    def count(self, row: "Row", rec: Dict[str, object]) -> None:
        """Count one written record (an error, or a row done)."""
        if "error" in rec:
            self.n_errors += 1
            if len(self.errors) < 100:
                self.errors.append(f"row {row[0]}: {rec['error']}")
        else:
            self.n_done += 1

    def summary(self, output: Path) -> str:
        text = (f"{self.n_done} rows annotated -> {output}; {self.n_skipped} already there (resumed); "
                f"{self.n_errors} rows written with an error")
        return text + "".join(f"\n  {e}" for e in self.errors[:10])


Row = Tuple[int, Optional[str], Optional[str], Optional[str], Optional[str]]  # row, id, text, question, problem


def read_rows(path: Path, file_format: str, text_field: str, question_field: str, id_field: str) -> Iterator[Row]:
    """The input's rows in order; a row that can't be read carries its problem
    (file, line, byte offset) instead of a text."""
    if file_format == "txt":
        for line_no, text, problem in text_lines(path):
            yield line_no - 1, None, text, None, problem and f"{path}:{line_no}: {problem}"
    elif file_format == "jsonl":  # row = line number - 1; blank lines hold no row
        for line_no, obj, problem in jsonl_rows(path):
            if problem is None and not isinstance(obj.get(text_field), str):
                problem = f"expected a string {text_field!r}"
            if problem is not None:
                yield line_no - 1, None, None, None, f"{path}:{line_no}: {problem}"
                continue
            question = obj.get(question_field)
            yield line_no - 1, row_id(obj.get(id_field)), obj[text_field], question if isinstance(question, str) else None, None
    else:
        with open_utf8(path) as raw_file:
            # undecodable bytes become lone surrogates so one bad row does not end the file; they are caught per row
            text_file = io.TextIOWrapper(raw_file, encoding="utf-8-sig", errors="surrogateescape", newline="")
            reader = csv.DictReader(text_file, delimiter="\t" if file_format == "tsv" else ",")
            if reader.fieldnames is None or text_field not in reader.fieldnames:
                raise BertflowError(Errors.E031.format(path=path, reader_fieldnames=reader.fieldnames,
                                                       text_field=text_field))
            for i, rec in enumerate(reader):
                where = f"{path}:{reader.line_num}"
                if None in rec or rec.get(text_field) is None:
                    yield i, None, None, None, f"{where}: expected {len(reader.fieldnames)} columns"
                    continue
                bad = next((v for v in rec.values() if isinstance(v, str) and _has_surrogate(v)), None)
                if bad is not None:
                    yield i, None, None, None, Errors.E021.format(where=where, detail="in this row")
                    continue
                yield i, row_id(rec.get(id_field)), rec[text_field], rec.get(question_field) or None, None


def _has_surrogate(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def row_id(value):
    """A row's id as a record holds it: a str or int as it is, anything else as its str."""
    return None if value is None else value if isinstance(value, (str, int)) else str(value)


def _digest_file(digest, path: Path) -> int:
    """Feed the bytes of ``path`` to ``digest`` a block at a time; RETURNS its size."""
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size


def file_fingerprint(path: Path) -> Dict[str, object]:
    """A file's path, size and content digest (an input a resumed run must match)."""
    digest = hashlib.blake2b(digest_size=16)
    size = _digest_file(digest, path)
    return {"path": str(path.resolve()), "size": size, "blake2b": digest.hexdigest()}


def model_fingerprint(nlp: Language, model: Union[str, Path, Language, None] = None) -> Dict[str, object]:
    """What identifies the model a record came from: its name, version, config,
    and its weights — the digest of every file of its directory (names and
    contents) when ``model`` is one, else of ``nlp.to_bytes()``. A model
    retrained into the same directory with the same config is another model."""
    digest = hashlib.blake2b(digest_size=16)
    folder = Path(model) if isinstance(model, (str, Path)) and Path(model).is_dir() else None
    if folder is not None:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(folder)).encode("utf8", "surrogateescape") + b"\0")
            _digest_file(digest, file)
            digest.update(b"\0")
    else:
        digest.update(nlp.to_bytes())
    config = nlp.config.to_str()
    return {"name": f"{nlp.meta.get('lang')}_{nlp.meta.get('name')}", "version": nlp.meta.get("version"),
            "config_blake2b": hashlib.blake2b(config.encode("utf8"), digest_size=16).hexdigest(),
            "weights_blake2b": digest.hexdigest()}


def manifest_path(output: Path) -> Path:
    return output.with_name(output.name + MANIFEST_SUFFIX)


def _check_paths(input_path: Path, output_path: Path) -> None:
    if output_path.resolve() == input_path.resolve() or (output_path.exists() and os.path.samefile(input_path, output_path)):
        raise BertflowError(Errors.E022.format(input=input_path, output=output_path))
    if output_path.exists() and not output_path.is_file():
        raise BertflowError(Errors.E026.format(output_path=output_path))


def _prepare_output(output: Path, manifest: Dict[str, object], overwrite: bool) -> set:
    """Rows OUTPUT already holds for this input and model (resume), after checking
    that OUTPUT is ours to write; writes the manifest for this run."""
    sidecar = manifest_path(output)
    if overwrite or not output.exists() or output.stat().st_size == 0:
        output.parent.mkdir(parents=True, exist_ok=True)
        sidecar.write_text(json.dumps(manifest, indent=2), encoding="utf8")
        output.write_bytes(b"")
        return set()
    if not sidecar.exists():
        raise BertflowError(Errors.E023.format(output=output, sidecar=sidecar.name))
    try:
        previous = json.loads(sidecar.read_text(encoding="utf8"))
    except (ValueError, UnicodeDecodeError):
        previous = None
    if not isinstance(previous, dict):
        raise BertflowError(Errors.E023.format(output=output, sidecar=sidecar.name))
    differs = [key for key in ("input", "model", "options") if previous.get(key) != manifest[key]]
    if differs:
        words = {"input": "another input", "model": "another model", "options": "other options"}
        raise BertflowError(Errors.E024.format(output=output, what=" and ".join(words[k] for k in differs),
                                               was=json.dumps({k: previous.get(k) for k in differs}),
                                               now=json.dumps({k: manifest[k] for k in differs})))
    done, keep = set(), 0
    with open(output, "rb") as f:
        for raw in f:  # split on \n only
            if not raw.endswith(b"\n"):
                break  # a half-written last line (the previous run was stopped mid-write)
            keep += len(raw)
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("row"), int):
                done.add(obj["row"])
    if keep < output.stat().st_size:
        with open(output, "r+b") as f:
            f.truncate(keep)
    return done


def reads_text_pair(nlp: Language) -> bool:
    """Whether a component declares that it reads ``doc._.text_pair`` (factory ``requires``)."""
    return any("doc._.text_pair" in nlp.get_pipe_meta(name).requires for name in nlp.pipe_names)


@contextmanager
def _spawned_workers(n_process: int) -> Iterator[None]:
    """Worker processes started by spawn for this call only (forked ones inherit torch's
    initialised thread pool and can deadlock); the process's start method is given back."""
    if n_process <= 1:
        yield
        return
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("spawn", force=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(previous, force=True)


def doc_record(doc: Doc, vectors: bool = False) -> Dict[str, object]:
    """The JSON-ready annotations of a doc (what every head writes, generically)."""
    rec: Dict[str, object] = {"text": doc.text}
    if doc.cats:
        rec["cats"] = {k: float(v) for k, v in doc.cats.items()}
    if doc.has_annotation("ENT_IOB"):
        rec["ents"] = [{"start_char": e.start_char, "end_char": e.end_char, "label": e.label_, "text": e.text}
                       for e in doc.ents]
    spans = {}
    for key, group in doc.spans.items():
        scores = group.attrs.get("scores") if isinstance(group.attrs, dict) else None
        spans[key] = [dict({"start_char": s.start_char, "end_char": s.end_char, "label": s.label_, "text": s.text},
                           **({"score": float(scores[i])} if scores is not None and i < len(scores) else {}))
                      for i, s in enumerate(group)]
    if spans:
        rec["spans"] = spans
    if doc._.text_pair is not None:
        rec["question"] = doc._.text_pair
    if vectors:
        rec["vector"] = [round(float(x), 6) for x in doc.vector]
    return rec


def row_record(row: Row, rec: Dict[str, object]) -> Dict[str, object]:
    """The record as written: the input ``row`` (and its ``id`` when given) first."""
    return {"row": row[0], **({"id": row[1]} if row[1] is not None else {}), **rec}


def _drop_failed_batch(proc_name, proc, docs, err) -> None:
    """Error handler for nlp.pipe: the failed batch is retried row by row later."""
    return None


def annotate_rows(nlp: Language, rows: Iterable[Row], write: Callable[[Row, Dict[str, object]], None], *,
                  batch_size: int = 32, n_process: int = 1, vectors: bool = False, use_pairs: bool = False,
                  chunk_size: int = 10_000) -> None:
    """Run ``rows`` through ``nlp`` and call ``write(row, record)`` once per row,
    in input order: the doc's record, or ``{"error": ...}`` (with the text when
    there is one) for a row that could not be read or processed. A batch that
    fails is retried one row at a time, so one bad row costs only itself.
    Rows run in chunks of ``chunk_size`` inside ``nlp.memory_zone()``."""
    # Rows stream through: only those inside the pipeline (about one sort buffer) are held at a time.
    # Unreadable rows wait in ``pending`` too, so every record is written in input order.
    pending: "OrderedDict[int, Row]" = OrderedDict()

    def make(row: Row) -> Doc:
        doc = nlp.make_doc(row[2])
        if use_pairs and row[3] is not None:
            doc._.text_pair = row[3]
        return doc

    def one_at_a_time(row: Row) -> None:
        if row[4] is not None:  # unreadable input row: written with its problem
            write(row, {"error": row[4]})
            return
        nlp.set_error_handler(raise_error)  # alone, a failing component must raise, not hand back its input
        try:
            write(row, doc_record(nlp(make(row)), vectors))
        except Exception as err:  # noqa: BLE001  (the row is kept, with its error)
            write(row, {"text": row[2], "error": f"{type(err).__name__}: {err}"})
        finally:
            nlp.set_error_handler(_drop_failed_batch)

    def run_chunk(chunk: List[Row]) -> None:
        """One chunk through nlp.pipe; rows of a batch that failed are retried one at a time."""
        stream = iter(chunk)

        def feed() -> Iterator[Tuple[Doc, Row]]:
            for row in stream:
                pending[row[0]] = row
                if row[4] is None:
                    yield make(row), row

        try:
            for doc, row in nlp.pipe(feed(), as_tuples=True, batch_size=batch_size, n_process=n_process):
                # docs come out in input order: rows before this one are unreadable rows or went down with
                # a failed batch (retried one at a time)
                while pending and next(iter(pending)) != row[0]:
                    one_at_a_time(pending.popitem(last=False)[1])
                pending.pop(row[0], None)
                write(row, doc_record(doc, vectors))
        except Exception:  # noqa: BLE001  (a failure outside any component: go on one row at a time)
            pass
        while pending:
            one_at_a_time(pending.popitem(last=False)[1])
        for row in stream:  # what the failed stream had not read yet
            one_at_a_time(row)

    nlp.set_error_handler(_drop_failed_batch)
    source = iter(rows)
    with _spawned_workers(n_process):
        while True:
            chunk = list(itertools.islice(source, chunk_size))
            if not chunk:
                break
            # Strings and lexemes of these texts live only inside the zone, so the vocab does not grow with
            # the stream; records are written before the zone closes.
            with nlp.memory_zone():
                run_chunk(chunk)


def annotate(model: Union[str, Path, Language], input_path: Path, output_path: Path, *, file_format: Optional[str] = None,
             text_field: str = "text", question_field: str = "question", id_field: str = "id",
             batch_size: int = 32, n_process: int = 1, vectors: bool = False, gpu_id: int = -1,
             progress: bool = True, chunk_size: int = 10_000, overwrite: bool = False) -> AnnotateReport:
    """Annotate every row of ``input_path`` with every component of ``model``
    into the JSONL file ``output_path`` (see the module docstring for formats,
    the record and the resume rule). ``overwrite`` starts OUTPUT again instead
    of resuming or refusing."""
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise BertflowError(Errors.E027.format(input_path=input_path))
    _check_paths(input_path, output_path)
    file_format = (file_format or input_path.suffix.lstrip(".")).lower()
    if file_format not in FORMATS:
        raise BertflowError(Errors.E028.format(file_format=file_format, input_path=input_path,
                                               formats=', '.join(FORMATS)))
    if chunk_size < 1:
        raise BertflowError(Errors.E029.format(chunk_size=chunk_size))
    if n_process > 1 and vectors:
        raise BertflowError(Errors.E030)
    with output_lock(output_path):  # one run per OUTPUT, from loading the model to the last record
        nlp = model if isinstance(model, Language) else load_pipeline(model, gpu_id)
        use_pairs = reads_text_pair(nlp)

        def rows() -> Iterator[Row]:
            return read_rows(input_path, file_format, text_field, question_field, id_field)

        report = AnnotateReport()
        n_questions = 0
        for row in rows():  # a counting pass, so the progress bar has a total (and a bad header fails early)
            report.n_rows += 1
            n_questions += row[3] is not None
        if n_questions and not use_pairs:
            warnings.warn(Errors.W004.format(n=n_questions, field=question_field, path=input_path), stacklevel=2)
        manifest = {
            "bertflow_annotate": MANIFEST_VERSION,
            "input": file_fingerprint(input_path),
            "model": model_fingerprint(nlp, model),
            "options": {"format": file_format, "text_field": text_field, "question_field": question_field,
                        "id_field": id_field, "vectors": vectors},
        }
        done = _prepare_output(output_path, manifest, overwrite)
        report.n_skipped = len(done)

        from tqdm import tqdm

        bar = tqdm(total=report.n_rows - len(done), disable=None if progress else True, unit="row",
                   desc="annotate")
        with open(output_path, "a", encoding="utf8", newline="\n") as out:
            def write(row: Row, rec: Dict[str, object]) -> None:
                out.write(json.dumps(row_record(row, rec), ensure_ascii=False) + "\n")
                report.count(row, rec)
                bar.update(1)

            source = (row for row in rows() if row[0] not in done)
            annotate_rows(nlp, source, write, batch_size=batch_size, n_process=n_process, vectors=vectors,
                          use_pairs=use_pairs, chunk_size=chunk_size)
        bar.close()
        return report
