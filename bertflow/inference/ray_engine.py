"""The ``ray`` engine of ``bertflow annotate``: the pipeline on Ray actors,
over many input files, into a folder of part files written exactly once.

The driver (the process running ``bertflow annotate``) loads the pipeline
once to check it and fingerprint it, reads the input files in order and cuts
each into shards of ``shard_rows`` rows; the rows travel to the workers
through Ray's object store, so only OUTPUT (and the model) must be on a path
every node can reach. Each worker is a Ray actor that loads the pipeline once
(on its own GPU with ``gpus_per_worker``) and, per shard, runs ``nlp.pipe``
over the rows (the encoder sorts them by length), then writes the shard's
part file (``engines.write_part``: temporary name, then rename). The driver
commits each finished shard in the manifest (``engines.ShardedOutput``); a
re-run skips committed shards. A worker that dies is replaced and its shard
given to another; a shard whose worker raised is tried again on another; a
row that fails is written with its error.
"""
import itertools
import os
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from bertflow.inference.annotate import AnnotateReport, file_fingerprint, model_fingerprint, reads_text_pair
from bertflow.inference.engines import (AnnotateJob, ShardedOutput, check_sharded_output, file_format_of, input_files, part_kind,
                      part_name, read_any_rows, write_part)
from bertflow.errors import BertflowError, Errors
from bertflow.files.outputs import output_lock

ACTOR_PREFIX = "bertflow-annotate-"
SHARD_TRIES = 3  # a shard whose worker raised is tried this often in all before the job stops
IN_FLIGHT = 2  # shards queued per worker, so a worker never waits for the driver


def _import_ray():
    try:
        import ray
    except ImportError:
        raise BertflowError(Errors.E092) from None
    return ray


class Annotator:
    """One worker: the pipeline loaded once, shards in, part files out."""

    def __init__(self, model: str, gpu: bool, threads: int, options: Dict[str, Any]):
        import torch

        torch.set_num_threads(max(1, threads))
        from bertflow.files.loading import load_pipeline

        # Ray gives an actor with num_gpus its GPU as device 0 (CUDA_VISIBLE_DEVICES)
        self.nlp = load_pipeline(model, 0 if gpu else -1)
        self.use_pairs = reads_text_pair(self.nlp)
        self.options = options

    def pid(self) -> int:
        return os.getpid()

    def annotate(self, folder: str, name: str, kind: str, source: str, rows: List[tuple]) -> Dict[str, Any]:
        from bertflow.inference.annotate import annotate_rows

        records: List[Dict[str, Any]] = []

        def write(row, rec):
            head = {"source": source, "row": row[0], **({"id": row[1]} if row[1] is not None else {})}
            records.append({**head, **rec})

        start = time.perf_counter()
        annotate_rows(self.nlp, rows, write, batch_size=self.options["batch_size"], vectors=self.options["vectors"],
                      use_pairs=self.use_pairs, chunk_size=self.options["chunk_size"])
        info = write_part(Path(folder), name, records, kind)
        info["seconds"] = time.perf_counter() - start
        return info


def _connect(ray, address: Optional[str], job: AnnotateJob) -> bool:
    """Join the cluster at ``address`` (or start one here); RETURNS whether we started or joined it
    (and so shut our connection down at the end)."""
    if ray.is_initialized():  # a caller (a notebook, a test) connected already: its cluster it is
        if address:
            current = ray.get_runtime_context().gcs_address
            warnings.warn(Errors.W007.format(current=current, address=address))
        return False
    if address and address != "auto":
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(os.cpu_count() or 1, int(job.workers * job.cpus_per_worker)), log_to_driver=False,
                     include_dashboard=False)
    except Exception as err:  # noqa: BLE001  (Ray raises ConnectionError, ValueError, RuntimeError...)
        raise BertflowError(Errors.E093.format(address=address, err=f"{type(err).__name__}: {err}")) from None
    return True


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``address`` (Ray retries a dead address
    for minutes before it gives up)."""
    import socket

    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BertflowError(Errors.E093.format(address=address, err="not an address: give HOST:PORT of the Ray head "
                                                                    "(e.g. 10.0.0.5:6379), or 'auto'"))
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
            return
    except (OSError, ValueError) as err:
        raise BertflowError(Errors.E093.format(address=address, err=f"nothing answers there ({err})")) from None


def _shards(files: List[Path], job: AnnotateJob, kind: str, out: ShardedOutput) -> Iterator[Tuple[str, str, list]]:
    """(part name, source, rows) of every shard not committed yet, in input order."""
    for file_index, path in enumerate(files):
        fmt = file_format_of(path, job.file_format)
        stream = read_any_rows(path, fmt, job.text_field, job.question_field, job.id_field)
        for shard_index in itertools.count():
            rows = list(itertools.islice(stream, job.shard_rows))
            if not rows:
                break
            name = part_name(file_index, shard_index, kind)
            if not out.committed(name):
                yield name, str(path), rows


def run_ray(job: AnnotateJob) -> AnnotateReport:
    """``bertflow annotate --engine ray`` (see the module docstring)."""
    ray = _import_ray()
    if job.workers < 1 or job.shard_rows < 1 or job.gpus_per_worker < 0 or job.cpus_per_worker <= 0:
        raise BertflowError(Errors.E094.format(workers=job.workers, shard_rows=job.shard_rows,
                                               gpus=job.gpus_per_worker, cpus=job.cpus_per_worker))
    output = Path(job.output)
    kind = part_kind(output)
    files = input_files(Path(job.input), job.file_format, output=output)
    if any(output.resolve() == f.resolve() or output.resolve() in f.resolve().parents for f in files):
        raise BertflowError(Errors.E022.format(input=job.input, output=output))
    check_sharded_output(output)  # a folder that is not ours is refused before Ray starts or the model loads
    with output_lock(output, "bertflow annotate --engine ray"):
        return _run_locked(ray, job, output, kind, files)


def _run_locked(ray, job: AnnotateJob, output: Path, kind: str, files: List[Path]) -> AnnotateReport:
    started = _connect(ray, job.address, job)  # before OUTPUT is touched: a bad address leaves nothing behind
    gpu = job.gpus_per_worker > 0
    threads = max(1, int(job.cpus_per_worker))
    options = {"batch_size": job.batch_size, "vectors": job.vectors, "chunk_size": job.chunk_size}
    remote = ray.remote(num_cpus=job.cpus_per_worker, num_gpus=job.gpus_per_worker)(Annotator)
    run_id = os.urandom(4).hex()
    generation = iter(range(1 << 30))

    def new_worker(i: int):  # named (per run and start), so an operator can find and stop one: ray list actors
        name = f"{ACTOR_PREFIX}{run_id}-{i}-{next(generation)}"
        return remote.options(name=name).remote(str(job.model), gpu, threads, options)

    # the workers load the pipeline while this process checks the model and counts the rows: the
    # start-up costs once, not twice, on the wall clock
    workers = {i: new_worker(i) for i in range(job.workers)}
    bar = None
    try:
        from bertflow.files.loading import load_pipeline

        nlp = load_pipeline(job.model, -1)  # here only to check the model and fingerprint it: a bad one fails now
        report = AnnotateReport()
        for path in files:  # a counting pass: the progress total, and a bad header fails before any work
            fmt = file_format_of(path, job.file_format)
            report.n_rows += sum(1 for _ in read_any_rows(path, fmt, job.text_field, job.question_field,
                                                          job.id_field))
        manifest = {"inputs": [file_fingerprint(p) for p in files], "model": model_fingerprint(nlp, job.model),
                    "options": dict(job.record_options(), shard_rows=job.shard_rows)}
        del nlp
        out = ShardedOutput(output, manifest, overwrite=job.overwrite)
        report.n_skipped = sum(info["rows"] for info in out.manifest["shards"].values())
        from tqdm import tqdm

        bar = tqdm(total=report.n_rows - report.n_skipped, disable=None if job.progress else True, unit="row",
                   desc="annotate (ray)")
        restarts, tries = 0, {}
        todo = deque()  # shards given back by a worker that died or raised
        source = _shards(files, job, kind, out)
        running: Dict[Any, Tuple[int, tuple]] = {}  # future -> (worker, shard)

        def submit(i: int) -> bool:
            shard = todo.popleft() if todo else next(source, None)
            if shard is None:
                return False
            name, src, rows = shard
            running[workers[i].annotate.remote(str(output), name, kind, src, rows)] = (i, shard)
            return True

        for i in workers:
            for _ in range(IN_FLIGHT):
                submit(i)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            i, shard = running.pop(ready[0])
            try:
                info = ray.get(ready[0])
            except ray.exceptions.RayActorError:  # the worker died: a new one takes its place and its shards
                for future, (j, other) in list(running.items()):
                    if j == i:
                        running.pop(future)
                        todo.append(other)
                todo.appendleft(shard)
                restarts += 1
                if restarts > 3 * job.workers:
                    raise BertflowError(Errors.E095.format(n=restarts, output=output)) from None
                workers[i] = new_worker(i)
                for _ in range(IN_FLIGHT):
                    submit(i)
                continue
            except ray.exceptions.RayTaskError as err:  # the shard raised: try it again (another worker, if any)
                tries[shard[0]] = tries.get(shard[0], 1) + 1
                if tries[shard[0]] > SHARD_TRIES:
                    raise BertflowError(Errors.E096.format(name=shard[0], source=shard[1], tries=SHARD_TRIES,
                                                           err=str(err).splitlines()[-1], output=output)) from None
                todo.append(shard)
                submit(i)
                continue
            out.commit(shard[0], {"source": shard[1], "first_row": shard[2][0][0], **info})
            report.n_errors += info["errors"]
            report.n_done += info["rows"] - info["errors"]
            bar.update(info["rows"])
            submit(i)
        out.finish()
    finally:
        if bar is not None:
            bar.close()
        for actor in workers.values():
            ray.kill(actor)
        if started:
            ray.shutdown()
    return report
