"""Engines behind ``bertflow annotate``: ``local`` (one process, one file, in
order) and ``ray`` (a cluster, many files, sharded), plus any a plugin adds
through the ``bertflow_engines`` hook.

An engine gets an ``AnnotateJob`` and returns an ``AnnotateReport``. A
sharded engine writes OUTPUT as a folder (``ShardedOutput``): rows are cut
into shards of ``shard_rows`` rows of one input file; a worker writes a
shard's part file under a temporary name and renames it when complete (an
atomic step), and the driver records it in ``_manifest.json``. A re-run with
the same input, model and options skips the recorded shards whose part file
is intact and redoes the rest, so every row comes out exactly once however
often a worker or the driver died.
"""
import glob
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from bertflow.errors import BertflowError, Errors
from bertflow.hooks.specs import EngineSpec

INPUT_FORMATS = ("txt", "jsonl", "csv", "tsv", "parquet")
PART_FORMATS = ("jsonl", "parquet")
MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
MANIFEST_VERSION = 1


@dataclass
class AnnotateJob:
    """Everything ``bertflow annotate`` was asked to do; engines read what they support."""

    model: str
    input: Path
    output: Path
    file_format: Optional[str] = None
    text_field: str = "text"
    question_field: str = "question"
    id_field: str = "id"
    batch_size: int = 32
    vectors: bool = False
    gpu_id: int = -1
    progress: bool = True
    chunk_size: int = 10_000
    overwrite: bool = False
    n_process: int = 1
    # sharded engines
    address: Optional[str] = None
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    shard_rows: int = 10_000
    engine_options: Dict[str, Any] = field(default_factory=dict)

    def record_options(self) -> Dict[str, Any]:
        """The options that shape a record (a resumed run must use the same)."""
        return {"format": self.file_format, "text_field": self.text_field, "question_field": self.question_field,
                "id_field": self.id_field, "vectors": self.vectors}


def run_local(job: AnnotateJob):
    """The ``local`` engine: today's ``bertflow annotate`` (one input file, one JSONL file, in order)."""
    from bertflow.inference.annotate import annotate

    engine_only = [name for name, given in (("--address", job.address is not None), ("--workers", job.workers != 1),
                                            ("--gpus-per-worker", job.gpus_per_worker != 0),
                                            ("--shard-rows", job.shard_rows != 10_000)) if given]
    if engine_only:
        raise BertflowError(Errors.E083.format(options=", ".join(engine_only)))
    return annotate(job.model, job.input, job.output, file_format=job.file_format, text_field=job.text_field,
                    question_field=job.question_field, id_field=job.id_field, batch_size=job.batch_size,
                    n_process=job.n_process, vectors=job.vectors, gpu_id=job.gpu_id, progress=job.progress,
                    chunk_size=job.chunk_size, overwrite=job.overwrite)


BUILT_IN = {
    "local": EngineSpec("local", run_local, "one process, one input file, one JSONL file in input order (default)"),
    "ray": EngineSpec("ray", "bertflow.inference.ray_engine:run_ray",
                      "Ray actors over files, folders or globs, sharded output, exactly once (pip install bertflow[ray])"),
}


def get_engines(pm=None) -> Dict[str, EngineSpec]:
    """The built-in engines and those of the installed plugins, by name."""
    from bertflow.hooks.manager import hook_records

    engines = dict(BUILT_IN)
    for name, (spec, owner) in hook_records("bertflow_engines", "engine", pm).items():
        if name in BUILT_IN:
            raise BertflowError(Errors.E005.format(kind="engine", name=name, first="bertflow", second=owner))
        engines[name] = spec
    return engines


def run_annotate(job: AnnotateJob, engine: str = "local", pm=None):
    """Run ``job`` on the engine named ``engine``."""
    engines = BUILT_IN if engine in BUILT_IN else get_engines(pm)  # a built-in needs no plugin loaded
    if engine not in engines:
        raise BertflowError(Errors.E084.format(engine=engine, known=", ".join(sorted(engines))))
    return engines[engine].runner()(job)


# ---- inputs ---------------------------------------------------------------------------------------------

def input_files(spec: Path, file_format: Optional[str] = None, output: Optional[Path] = None) -> List[Path]:
    """The files INPUT names: a file, a folder (its files of a known format,
    not recursing) or a glob; sorted, so shard numbers are stable. A folder's
    or a pattern's matches inside ``output`` (a previous run's part files) are
    not inputs."""
    text = str(spec)
    if spec.is_dir():  # a path that exists is that path, whatever characters its name holds
        found = [p for p in spec.iterdir() if not p.name.startswith((".", "_"))]
    elif spec.is_file():
        found = [spec]
    elif any(ch in text for ch in "*?["):
        found = [Path(p) for p in glob.glob(text, recursive=True)]
    else:
        raise BertflowError(Errors.E085.format(input=spec))
    if output is not None and found != [spec]:
        inside = Path(output).resolve()
        found = [p for p in found if inside not in p.resolve().parents]
    if spec.is_dir() and file_format:  # a folder's other files (a model's weights, notes) are not texts
        found = [p for p in found if p.suffix.lstrip(".").lower() == file_format.lower()]
    files = sorted(p for p in found if p.is_file() and file_format_of(p, file_format) in INPUT_FORMATS)
    if not files:
        raise BertflowError(Errors.E086.format(input=spec, formats=", ".join(INPUT_FORMATS)))
    return files


def file_format_of(path: Path, file_format: Optional[str] = None) -> str:
    """The input format of ``path``: the one given for every file, else its suffix."""
    return file_format or path.suffix.lstrip(".").lower()


def read_any_rows(path: Path, file_format: str, text_field: str, question_field: str, id_field: str) -> Iterator:
    """``annotate.read_rows`` for every input format, parquet too (through pyarrow)."""
    from bertflow.inference.annotate import read_rows, row_id

    if file_format != "parquet":
        yield from read_rows(path, file_format, text_field, question_field, id_field)
        return
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BertflowError(Errors.E087.format(path=path)) from None
    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    if text_field not in names:
        raise BertflowError(Errors.E031.format(path=path, reader_fieldnames=names, text_field=text_field))
    columns = [c for c in (text_field, question_field, id_field) if c in names]
    row = 0
    for batch in parquet.iter_batches(columns=columns, batch_size=4096):
        data = batch.to_pydict()
        for i in range(batch.num_rows):
            text = data[text_field][i]
            question = data[question_field][i] if question_field in data else None
            if not isinstance(text, str):
                yield row, None, None, None, f"{path}: row {row}: expected a string {text_field!r}, got {text!r:.40}"
            else:
                yield (row, row_id(data[id_field][i]) if id_field in data else None, text,
                       question if isinstance(question, str) else None, None)
            row += 1


read_rows = read_any_rows  # the public name (bertflow.api.read_rows)


# ---- sharded output -------------------------------------------------------------------------------------

def part_kind(output: Path) -> str:
    """The part-file format OUTPUT's suffix asks for."""
    kind = output.suffix.lstrip(".").lower()
    if kind not in PART_FORMATS:
        raise BertflowError(Errors.E088.format(output=output))
    return kind


def part_name(file_index: int, shard_index: int, kind: str) -> str:
    return f"part-{file_index:05d}-{shard_index:06d}.{kind}"


def write_part(folder: Path, name: str, records: Sequence[Dict[str, Any]], kind: str) -> Dict[str, Any]:
    """Write one shard's records as ``folder/name``: to a temporary name first,
    renamed when complete, so a part file is either whole or absent. RETURNS
    its row count, error count and size."""
    tmp = folder / f".{name}.tmp-{uuid.uuid4().hex}"
    try:
        if kind == "jsonl":
            with open(tmp, "w", encoding="utf8", newline="\n") as out:
                for rec in records:
                    out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                out.flush()
                os.fsync(out.fileno())
        else:
            _write_parquet(tmp, records)
        os.replace(tmp, folder / name)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"rows": len(records), "errors": sum("error" in r for r in records), "bytes": (folder / name).stat().st_size}


def _write_parquet(path: Path, records: Sequence[Dict[str, Any]]) -> None:
    """Flat columns: source, row, id, text, error, question; cats, ents and spans as JSON text; vector as floats."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def column(key, encode=None):
        return [None if r.get(key) is None else (encode(r[key]) if encode else r[key]) for r in records]

    as_json = lambda value: json.dumps(value, ensure_ascii=False)  # noqa: E731
    table = pa.table({
        "source": pa.array(column("source"), pa.string()), "row": pa.array(column("row"), pa.int64()),
        "id": pa.array(column("id", str), pa.string()), "text": pa.array(column("text"), pa.string()),
        "error": pa.array(column("error"), pa.string()), "question": pa.array(column("question"), pa.string()),
        "cats": pa.array(column("cats", as_json), pa.string()), "ents": pa.array(column("ents", as_json), pa.string()),
        "spans": pa.array(column("spans", as_json), pa.string()),
        "vector": pa.array(column("vector"), pa.list_(pa.float32())),
    })
    pq.write_table(table, path)


PART_NAME = re.compile(r"part-\d{5}-\d{6}\.(jsonl|parquet)")
TEMPORARY_NAME = re.compile(r"\.part-\d{5}-\d{6}\.(jsonl|parquet)\.tmp-\w+")


def is_part_name(name: str) -> bool:
    """Whether ``name`` is a part file name this engine writes (``part_name``)."""
    return PART_NAME.fullmatch(name) is not None


def is_temporary_name(name: str) -> bool:
    return name == MANIFEST + ".tmp" or TEMPORARY_NAME.fullmatch(name) is not None


def read_manifest(folder: Path) -> Optional[Dict[str, Any]]:
    """The sharded manifest in ``folder``, or None where there is none or it is not ours."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("bertflow_annotate_sharded") != MANIFEST_VERSION:
        return None
    return data


def check_sharded_output(folder: Path) -> Optional[Dict[str, Any]]:
    """Check that the folder OUTPUT names is bertflow's to write, before any
    work starts: absent, empty, or holding only what a previous run recorded
    in its manifest (its manifest, part files, temporary files, ``_SUCCESS``).
    Anything else — another tool's files, or files with no manifest of ours
    beside them — is refused, ``--overwrite`` or not. RETURNS the previous
    manifest (None where there is none)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BertflowError(Errors.E089.format(output=folder))
    if not folder.exists():
        return None
    names = sorted(p.name for p in folder.iterdir())
    previous = read_manifest(folder)
    if previous is None:
        if names:
            raise BertflowError(Errors.E090.format(output=folder, files=", ".join(names[:5])))
        return None
    theirs = [n for n in names if n not in (MANIFEST, SUCCESS) and not is_part_name(n) and not is_temporary_name(n)]
    if theirs:  # never write into a folder that holds someone else's files
        raise BertflowError(Errors.E090.format(output=folder, files=", ".join(theirs[:5])))
    return previous


class ShardedOutput:
    """OUTPUT as a folder of part files, written exactly once (see the module docstring)."""

    def __init__(self, folder: Path, manifest: Dict[str, Any], overwrite: bool = False):
        self.folder, self.kind = Path(folder), part_kind(Path(folder))
        self.manifest = dict(manifest, bertflow_annotate_sharded=MANIFEST_VERSION, shards={})
        previous = check_sharded_output(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if previous is not None and not overwrite:
            differs = [k for k in ("inputs", "model", "options") if previous.get(k) != manifest.get(k)]
            if differs:
                words = {"inputs": "other inputs", "model": "another model", "options": "other options"}
                raise BertflowError(Errors.E091.format(output=self.folder, what=" and ".join(words[k] for k in differs)))
            for name, info in previous.get("shards", {}).items():  # a part file damaged or gone is redone
                part = self.folder / name
                if is_part_name(name) and part.is_file() and part.stat().st_size == info.get("bytes"):
                    self.manifest["shards"][name] = info
        # what this run does not keep of ours: a crashed run's temporary files, unrecorded or replaced parts
        for p in self.folder.iterdir():
            if is_temporary_name(p.name) or (is_part_name(p.name) and p.name not in self.manifest["shards"]):
                p.unlink()
        (self.folder / SUCCESS).unlink(missing_ok=True)
        self._save()

    def committed(self, name: str) -> bool:
        return name in self.manifest["shards"]

    def commit(self, name: str, info: Dict[str, Any]) -> None:
        """Record a part file the worker has renamed into place."""
        self.manifest["shards"][name] = info
        self._save()

    def finish(self) -> None:
        (self.folder / SUCCESS).write_text("", encoding="utf8")

    def _save(self) -> None:
        tmp = self.folder / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self.manifest, indent=1), encoding="utf8")
        os.replace(tmp, self.folder / MANIFEST)
