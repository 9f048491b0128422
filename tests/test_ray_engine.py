"""``bertflow annotate --engine ray``: the same records as the local engine,
over folders of mixed formats, every row exactly once through resumes, a
worker that raises and a worker that is killed. A local Ray with 2 CPUs runs
for the module; a machine without Ray skips it (``make test`` installs the
``ray`` extra, so CI runs it)."""
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the ray engine needs Ray: pip install 'bertflow[ray]'")

from bertflow.inference.annotate import annotate  # noqa: E402
from bertflow.inference.engines import AnnotateJob, run_annotate  # noqa: E402
from bertflow.errors import BertflowError  # noqa: E402

pytestmark = pytest.mark.slow  # a local Ray cluster and its workers

# A component the workers register at start-up (Ray's worker_process_setup_hook): it raises on texts with
# "boom" (a row that fails) and ends its process the first time it sees "die" (a worker killed mid-shard).
TEST_COMPONENTS = '''
import os
from pathlib import Path
from spacy.language import Language

@Language.component("test_trouble")
def trouble(doc):
    if "boom" in doc.text:
        raise RuntimeError("boom in this row")
    if "die" in doc.text:
        marker = Path(os.environ["TEST_DIE_MARKER"])
        if not marker.exists():
            marker.write_text("died once")
            os._exit(1)
    return doc

def setup():
    pass
'''


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    code = tmp_path_factory.mktemp("ray_code")
    (code / "test_trouble_components.py").write_text(TEST_COMPONENTS)
    sys.path.insert(0, str(code))
    marker = code / "died"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(code), "TEST_DIE_MARKER": str(marker),
                                       "OMP_NUM_THREADS": "1"},
                          "worker_process_setup_hook": "test_trouble_components.setup"})
    yield marker
    ray.shutdown()
    sys.path.remove(str(code))


def _build(tiny_bert_dir, path: Path, trouble: bool = False) -> Path:
    from test_annotate import build

    nlp = build(tiny_bert_dir, "textcat")
    if trouble:
        import test_trouble_components  # noqa: F401  (registers test_trouble here too)

        nlp.add_pipe("test_trouble")
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def model(tiny_bert_dir, tmp_path_factory):
    return _build(tiny_bert_dir, tmp_path_factory.mktemp("ray_model") / "model")


def _write_texts(path: Path, n: int, prefix: str = "the film") -> Path:
    path.write_bytes(b"".join(f"{prefix} number {i} was good\n".encode() for i in range(n)) + b"\xff\xfe bad bytes\n")
    return path


def _records(folder: Path) -> list:
    return [json.loads(line) for part in sorted(folder.glob("part-*.jsonl")) for line in part.read_text().splitlines()]


def _local(tmp: Path, model: Path, src: Path) -> list:
    out = tmp / f"local-{src.name}.jsonl"
    annotate(model, src, out, progress=False)
    return [json.loads(line) for line in out.read_text().splitlines()]


def _ray(model: Path, src: Path, out: Path, **options):
    """The ray engine on the module's cluster; one worker unless a test needs two (each starts in seconds)."""
    job = AnnotateJob(model=str(model), input=src, output=out, progress=False,
                      **{"workers": 1, "shard_rows": 40, **options})
    return run_annotate(job, "ray")


def _exactly_once(records: list, expected: dict) -> None:
    keys = [(Path(r["source"]).name, r["row"]) for r in records]
    assert len(keys) == len(set(keys)), "a row was written twice"
    assert sorted(keys) == sorted((name, row) for name, n in expected.items() for row in range(n))


def test_ray_writes_what_the_local_engine_writes_and_a_rerun_redoes_only_what_is_missing(cluster, model, tmp_path):
    """Two workers write the local engine's records; after a shard is lost, another is cut short and a
    dead worker's temp file is left, a rerun (one worker) writes only those rows, exactly once."""
    src = _write_texts(tmp_path / "texts.txt", 150)
    out = tmp_path / "out.jsonl"
    report = _ray(model, src, out, workers=2)
    got = sorted(_records(out), key=lambda r: r["row"])
    expected = _local(tmp_path, model, src)
    assert [r.pop("source") for r in got] == [str(src)] * 151
    assert [r["row"] for r in got] == [r["row"] for r in expected] == list(range(151))
    for a, b in zip(got, expected):
        assert a.keys() == b.keys()
        assert a.get("text") == b.get("text") and a.get("error") == b.get("error")
        if "cats" in a:
            assert a["cats"] == pytest.approx(b["cats"], abs=1e-5)
    assert "error" in got[-1] and report.n_errors == 1 and report.n_done == 150
    assert (out / "_SUCCESS").exists()
    parts = sorted(out.glob("part-*.jsonl"))
    assert len(parts) == 4  # 151 rows / 40 per shard
    kept = {p.name: p.stat().st_mtime_ns for p in parts[2:]}
    parts[0].unlink()  # a lost shard
    parts[1].write_bytes(parts[1].read_bytes()[:100])  # a shard cut short (a crash mid-write of a copy, a bad disk)
    (out / ".part-00000-000004.jsonl.tmp-dead").write_text("half a shard of a killed worker")
    report = _ray(model, src, out)
    assert report.n_skipped == 151 - 80 and report.n_done + report.n_errors == 80
    _exactly_once(_records(out), {"texts.txt": 151})
    assert {p.name: p.stat().st_mtime_ns for p in sorted(out.glob("part-*.jsonl"))[2:]} == kept  # not rewritten
    assert not list(out.glob(".part-*"))
    # the same OUTPUT for another input is refused rather than mixed
    other = _write_texts(tmp_path / "other.txt", 10)
    with pytest.raises(BertflowError, match="for other inputs"):
        _ray(model, other, out)


def test_a_folder_of_mixed_formats(cluster, model, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "in"
    folder.mkdir()
    _write_texts(folder / "a.txt", 30)
    (folder / "b.jsonl").write_text("".join(json.dumps({"text": f"jsonl row {i}", "id": f"b{i}"}) + "\n"
                                            for i in range(25)) + "{not json\n")
    (folder / "c.csv").write_text("id,text\n" + "".join(f"c{i},csv row {i}\n" for i in range(20)))
    (folder / "d.tsv").write_text("text\n" + "".join(f"tsv row {i}\n" for i in range(10)))
    pq.write_table(pa.table({"text": [f"parquet row {i}" for i in range(45)] + [None]}), folder / "e.parquet")
    (folder / "notes.md").write_text("not an input format: left alone")
    report = _ray(model, folder, tmp_path / "out.parquet")
    import pyarrow.parquet as pq

    table = pa.concat_tables([pq.read_table(p) for p in sorted((tmp_path / "out.parquet").glob("part-*.parquet"))])
    records = table.to_pylist()
    _exactly_once(records, {"a.txt": 31, "b.jsonl": 26, "c.csv": 20, "d.tsv": 10, "e.parquet": 46})
    by_key = {(Path(r["source"]).name, r["row"]): r for r in records}
    assert by_key[("b.jsonl", 3)]["id"] == "b3" and by_key[("c.csv", 4)]["id"] == "c4"
    assert by_key[("e.parquet", 7)]["text"] == "parquet row 7" and json.loads(by_key[("e.parquet", 7)]["cats"])
    assert "invalid JSON" in by_key[("b.jsonl", 25)]["error"] and "expected a string" in by_key[("e.parquet", 45)]["error"]
    assert report.n_errors == 3 and report.n_rows == 31 + 26 + 20 + 10 + 46


def test_a_row_that_raises_is_kept_with_its_error_and_a_killed_worker_is_replaced(cluster, tiny_bert_dir, tmp_path):
    model = _build(tiny_bert_dir, tmp_path / "trouble_model", trouble=True)
    lines = [f"row {i} {'boom' if i % 17 == 5 else 'die' if i == 91 else 'fine'}" for i in range(160)]
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(lines) + "\n")
    report = _ray(model, src, tmp_path / "out.jsonl")
    records = _records(tmp_path / "out.jsonl")
    _exactly_once(records, {"texts.txt": 160})
    assert cluster.exists()  # a worker did die on row 91; its shard was done again by a new worker
    errors = {r["row"]: r["error"] for r in records if "error" in r}
    assert errors == {i: "RuntimeError: boom in this row" for i in range(160) if i % 17 == 5}
    assert report.n_errors == len(errors)


def test_a_worker_killed_from_outside(cluster, model, tmp_path, monkeypatch):
    from bertflow.inference.engines import ShardedOutput

    src = _write_texts(tmp_path / "texts.txt", 1200)
    out = tmp_path / "out.jsonl"
    first_commit = threading.Event()
    commit = ShardedOutput.commit

    def commit_and_tell(self, name, info):  # the driver records a shard: the workers are up and working
        commit(self, name, info)
        first_commit.set()

    monkeypatch.setattr(ShardedOutput, "commit", commit_and_tell)
    result = {}
    job = threading.Thread(target=lambda: result.setdefault("report", _ray(model, src, out, shard_rows=30, workers=2)))
    job.start()
    assert first_commit.wait(timeout=120), "no shard was committed"
    assert job.is_alive()  # 40 shards: far from done after the first
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["name"].startswith("bertflow-annotate-")]
    assert names
    ray.kill(ray.get_actor(names[0], namespace=next(a["namespace"] for a in ray.util.list_named_actors(
        all_namespaces=True) if a["name"] == names[0])))
    job.join(timeout=300)
    assert not job.is_alive() and "report" in result
    _exactly_once(_records(out), {"texts.txt": 1201})


def test_clear_errors(cluster, model, tmp_path, monkeypatch):
    src = _write_texts(tmp_path / "texts.txt", 5)
    with pytest.raises(BertflowError, match="must end in .jsonl or .parquet"):
        _ray(model, src, tmp_path / "out.csv")
    theirs = tmp_path / "theirs.jsonl"
    theirs.mkdir()
    (theirs / "precious.txt").write_text("keep me")
    with pytest.raises(BertflowError, match="did not write"):
        _ray(model, src, theirs)
    assert (theirs / "precious.txt").read_text() == "keep me"
    with pytest.raises(BertflowError, match="only for a sharded engine"):
        run_annotate(AnnotateJob(model=str(model), input=src, output=tmp_path / "o.jsonl", workers=2), "local")
    with pytest.raises(BertflowError, match="Unknown engine 'spark'"):
        run_annotate(AnnotateJob(model=str(model), input=src, output=tmp_path / "o.jsonl"), "spark")
    # this process is connected already (the module's cluster): an address is not silently dropped
    with pytest.warns(UserWarning, match=r"already initialised in this process .* address '127.0.0.1:9' is not used"):
        report = _ray(model, src, tmp_path / "here.jsonl", address="127.0.0.1:9")
    assert report.n_done == 5
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(BertflowError, match=r"pip install 'bertflow\[ray\]'"):
        _ray(model, src, tmp_path / "never.jsonl")


def test_a_bad_address_fails_fast_and_leaves_nothing(model, tmp_path):
    src = _write_texts(tmp_path / "texts.txt", 5)
    out = tmp_path / "out.jsonl"
    # a fresh process: in this one Ray is already up (the module's cluster)
    result = subprocess.run([sys.executable, "-m", "bertflow", "annotate", str(model), str(src), str(out),
                             "--engine", "ray", "--address", "127.0.0.1:9"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "Could not connect to Ray at '127.0.0.1:9'" in result.stderr
    assert not out.exists()


def test_ray_resume_refuses_a_model_retrained_into_the_same_folder(cluster, tiny_bert_dir, tmp_path):
    from test_edges import retrained

    from bertflow.files.loading import load_pipeline

    model = _build(tiny_bert_dir, tmp_path / "mdl")
    src, out = _write_texts(tmp_path / "texts.txt", 90), tmp_path / "out.jsonl"
    _ray(model, src, out)
    sorted(out.glob("part-*.jsonl"))[-1].unlink()  # a run stopped before its last shard
    retrained(load_pipeline(model), 2).to_disk(model)
    with pytest.raises(BertflowError, match="for another model"):
        _ray(model, src, out)


def test_ray_on_a_locked_output_is_refused_before_ray_starts(model, tmp_path, monkeypatch):
    from bertflow.inference import ray_engine
    from bertflow.files.outputs import output_lock

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for a run that is refused")

    monkeypatch.setattr(ray_engine, "_connect", no_ray)
    src, out = _write_texts(tmp_path / "texts.txt", 5), tmp_path / "out.jsonl"
    with output_lock(out):
        with pytest.raises(BertflowError, match="is being written by"):
            _ray(model, src, out)
    (tmp_path / "theirs.jsonl").mkdir()
    (tmp_path / "theirs.jsonl" / "data.csv").write_text("x")
    with pytest.raises(BertflowError, match="did not write"):
        _ray(model, src, tmp_path / "theirs.jsonl")
    assert not out.exists()
