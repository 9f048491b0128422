"""``bertflow annotate``: stream texts through a pipeline into JSONL.

Input: ``.txt`` (one text per line), ``.jsonl`` (objects with a text field,
optionally a question and an id) or ``.csv``/``.tsv`` (a header naming the
columns). Output: one JSON object per input row, in the order rows finish:
``row`` (0-based input row), ``id`` (when given), ``text``, ``cats``,
``ents`` (character offsets), ``spans`` (every ``doc.spans`` group, e.g. QA
answers with their scores), ``question`` (when given: it becomes
``doc._.text_pair``), ``vector`` (with ``vectors=True``) — or ``error`` for a
row that could not be read or processed. Nothing is dropped: a batch that
fails is retried row by row, and each row that still fails is written with
its error. Re-running on the same OUTPUT resumes: rows already there are
skipped (a half-written last line is discarded).

Memory stays flat over any length of input: rows are read lazily and run in
chunks of ``chunk_size`` inside ``nlp.memory_zone()``, so the strings of the
texts do not pile up in the vocab.
"""
import csv
import itertools
import json
import multiprocessing
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc

from .corpus import jsonl_rows
from .errors import BertflowError
from .loading import load_pipeline

FORMATS = ("txt", "jsonl", "csv", "tsv")


@dataclass
class AnnotateReport:
    n_rows: int = 0
    n_done: int = 0
    n_skipped: int = 0  # already in OUTPUT
    n_errors: int = 0
    errors: List[str] = field(default_factory=list)

    def summary(self, output: Path) -> str:
        text = (f"{self.n_done} rows annotated -> {output}; {self.n_skipped} already there (resumed); "
                f"{self.n_errors} rows written with an error")
        return text + "".join(f"\n  {e}" for e in self.errors[:10])


Row = Tuple[int, Optional[str], Optional[str], Optional[str], Optional[str]]  # row, id, text, question, problem


def read_rows(path: Path, file_format: str, text_field: str, question_field: str, id_field: str) -> Iterator[Row]:
    if file_format == "txt":
        with open(path, encoding="utf8") as f:
            for i, line in enumerate(f):
                yield i, None, line.rstrip("\n").rstrip("\r"), None, None
    elif file_format == "jsonl":  # row = line number - 1; blank lines hold no row
        for line_no, obj, problem in jsonl_rows(path):
            if problem is None and not isinstance(obj.get(text_field), str):
                problem = f"expected a string {text_field!r}"
            if problem is not None:
                yield line_no - 1, None, None, None, f"{path}:{line_no}: {problem}"
                continue
            question = obj.get(question_field)
            yield line_no - 1, _id(obj.get(id_field)), obj[text_field], question if isinstance(question, str) else None, None
    else:
        with open(path, encoding="utf8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if file_format == "tsv" else ",")
            if reader.fieldnames is None or text_field not in reader.fieldnames:
                raise BertflowError(f"{path}:1: the header {reader.fieldnames} has no {text_field!r} column "
                                    f"(use --text-field to name it).")
            for i, rec in enumerate(reader):
                if None in rec or rec.get(text_field) is None:
                    yield i, None, None, None, f"{path}:{i + 2}: expected {len(reader.fieldnames)} columns"
                    continue
                yield i, _id(rec.get(id_field)), rec[text_field], rec.get(question_field) or None, None


def _id(value):
    return None if value is None else value if isinstance(value, (str, int)) else str(value)


def _done_rows(output: Path) -> set:
    """Rows already in OUTPUT; rewrites it without a half-written last line."""
    if not output.exists():
        return set()
    good, done = [], set()
    for line in output.read_text(encoding="utf8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("row"), int):
            done.add(obj["row"])
            good.append(line)
    output.write_text("".join(g + "\n" for g in good), encoding="utf8")
    return done


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


def _drop_failed_batch(proc_name, proc, docs, err) -> None:
    """Error handler for nlp.pipe: the failed batch is retried row by row later."""
    return None


def annotate(model: Union[str, Path, Language], input_path: Path, output_path: Path, *, file_format: Optional[str] = None,
             text_field: str = "text", question_field: str = "question", id_field: str = "id",
             batch_size: int = 32, n_process: int = 1, vectors: bool = False, gpu_id: int = -1,
             progress: bool = True, chunk_size: int = 10_000) -> AnnotateReport:
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise BertflowError(f"{input_path} does not exist.")
    file_format = (file_format or input_path.suffix.lstrip(".")).lower()
    if file_format not in FORMATS:
        raise BertflowError(f"Unknown input format {file_format!r} for {input_path}: use one of {', '.join(FORMATS)} "
                            f"(--format).")
    if chunk_size < 1:
        raise BertflowError(f"chunk_size must be at least 1, not {chunk_size}.")
    if n_process > 1:
        if vectors:
            raise BertflowError("--vectors needs --n-process 1: spaCy does not carry a head's doc.vector hooks back "
                                "from worker processes, so the vectors would be wrong.")
        # Forked workers inherit torch's initialised thread pool and can deadlock; spawned ones start clean.
        multiprocessing.set_start_method("spawn", force=True)
    nlp = model if isinstance(model, Language) else load_pipeline(model, gpu_id)
    done = _done_rows(output_path)
    report = AnnotateReport(n_skipped=len(done))

    def rows() -> Iterator[Row]:
        return read_rows(input_path, file_format, text_field, question_field, id_field)

    report.n_rows = sum(1 for _ in rows())  # a counting pass, so the progress bar has a total
    output_path.parent.mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm

    bar = tqdm(total=report.n_rows - len(done), disable=not progress, unit="row", desc="annotate")
    # Rows stream through: only those inside the pipeline (about one sort buffer) are held at a time.
    pending: "OrderedDict[int, Row]" = OrderedDict()
    with open(output_path, "a", encoding="utf8") as out:
        def write(row: Row, rec: Dict[str, object]) -> None:
            head = {"row": row[0], **({"id": row[1]} if row[1] is not None else {})}
            out.write(json.dumps({**head, **rec}, ensure_ascii=False) + "\n")
            if "error" in rec:
                report.n_errors += 1
                if len(report.errors) < 100:
                    report.errors.append(f"row {row[0]}: {rec['error']}")
            else:
                report.n_done += 1
            bar.update(1)

        def make(row: Row) -> Doc:
            doc = nlp.make_doc(row[2])
            if row[3] is not None:
                doc._.text_pair = row[3]
            return doc

        def one_at_a_time(row: Row) -> None:
            try:
                write(row, doc_record(nlp(make(row)), vectors))
            except Exception as err:  # noqa: BLE001  (the row is kept, with its error)
                write(row, {"text": row[2], "error": f"{type(err).__name__}: {err}"})

        def run_chunk(chunk: List[Row]) -> None:
            """One chunk through nlp.pipe; rows of a batch that failed are retried one at a time."""
            stream = iter(chunk)

            def feed() -> Iterator[Tuple[Doc, Row]]:
                for row in stream:
                    if row[4] is not None:  # unreadable input row: written with its problem
                        write(row, {"error": row[4]})
                        continue
                    pending[row[0]] = row
                    yield make(row), row

            try:
                for doc, row in nlp.pipe(feed(), as_tuples=True, batch_size=batch_size, n_process=n_process):
                    # docs come out in input order: rows before this one that never came out went down with a
                    # failed batch; retry them one at a time
                    while pending and next(iter(pending)) != row[0]:
                        one_at_a_time(pending.popitem(last=False)[1])
                    pending.pop(row[0], None)
                    write(row, doc_record(doc, vectors))
            except Exception:  # noqa: BLE001  (a failure outside any component: go on one row at a time)
                pass
            while pending:
                one_at_a_time(pending.popitem(last=False)[1])
            for row in stream:  # what the failed stream had not read yet
                if row[4] is not None:
                    write(row, {"error": row[4]})
                else:
                    one_at_a_time(row)

        nlp.set_error_handler(_drop_failed_batch)
        source = (row for row in rows() if row[0] not in done)
        while True:
            chunk = list(itertools.islice(source, chunk_size))
            if not chunk:
                break
            # Strings and lexemes of these texts live only inside the zone, so the vocab does not grow with
            # the stream; records are written before the zone closes.
            with nlp.memory_zone():
                run_chunk(chunk)
    bar.close()
    return report
