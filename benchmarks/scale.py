"""Scale-out inference: ``bertflow annotate`` with the local engine against the
ray engine at 1 and 2 workers, on the same texts and pipeline, in one run.

The texts are the SST-2 and CoNLL-2003 dev sentences repeated to ``--texts``
rows of one .txt file; the pipeline is the encoder with three heads (textcat,
NER, similarity; untrained heads cost what trained ones do), saved to disk as
a user's would be. Each engine runs as a user runs it, ``python -m bertflow
annotate MODEL INPUT OUTPUT [--engine ray ...]``, and the wall time covers
everything: start-up, Ray and its workers, reading, writing. Every output is
checked to hold each input row once.

    python benchmarks/scale.py --data ../shared/data --texts 100000

Settings: local (torch on both cores), ray 1 worker x 2 CPUs, ray 2 workers x
1 CPU. Writes its section of benchmarks/BENCHMARKS.md.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_section  # noqa: E402
from speed import bertflow_pipeline, load_texts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def count_rows(output: Path) -> int:
    files = sorted(output.glob("part-*.jsonl")) if output.is_dir() else [output]
    rows = set()
    n = 0
    for path in files:
        for line in path.read_text(encoding="utf8").splitlines():
            rec = json.loads(line)
            rows.add(rec["row"])
            n += 1
    if n != len(rows):
        raise SystemExit(f"{output}: {n} records for {len(rows)} rows (a row written twice)")
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--shard-rows", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each setting, interleaved; the fastest kept")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    sentences = load_texts(args.data, 4000)
    texts = [sentences[i % len(sentences)] for i in range(args.texts)]
    settings = [("local", []),
                ("ray, 1 worker × 2 CPUs", ["--engine", "ray", "--workers", "1", "--cpus-per-worker", "2"]),
                ("ray, 2 workers × 1 CPU", ["--engine", "ray", "--workers", "2", "--cpus-per-worker", "1"])]
    if args.gpu_id >= 0:
        settings = [("local, GPU", ["--gpu-id", str(args.gpu_id)]),
                    ("ray, 1 GPU worker", ["--engine", "ray", "--workers", "1", "--gpus-per-worker", "1"])]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "texts.txt").write_text("".join(t.replace("\n", " ") + "\n" for t in texts), encoding="utf8")
        bertflow_pipeline(argparse.Namespace(encoder=args.encoder, gpu_id=-1), sentences).to_disk(tmp / "model")
        runs = [(r, i, setting) for r in range(args.repeats) for i, setting in enumerate(settings)]
        best: dict = {}
        for repeat, i, (name, extra) in runs:  # interleaved; the fastest repeat of each is kept
            out = tmp / f"out-{i}-{repeat}.jsonl"
            cmd = [sys.executable, "-m", "bertflow", "annotate", str(tmp / "model"), str(tmp / "texts.txt"), str(out),
                   "--batch-size", str(args.batch), *extra]
            if "ray" in extra:
                cmd += ["--shard-rows", str(args.shard_rows)]
            start = time.perf_counter()
            result = subprocess.run(cmd, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if result.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
            n = count_rows(out)
            if n != args.texts:
                raise SystemExit(f"{name}: {n} rows written for {args.texts} inputs")
            print({"repeat": repeat, "setting": name, "seconds": seconds}, flush=True)
            if name not in best or seconds < best[name]["seconds"]:
                best[name] = {"setting": name, "seconds": seconds, "rows_per_s": args.texts / seconds}
        rows = [best[name] for name, _ in settings]
    base = rows[0]["seconds"]
    lines = [
        f"Machine: {machine()}. {args.texts:,} texts (the SST-2 and CoNLL-2003 dev sentences, repeated) through "
        f"encoder ({args.encoder}) + textcat + NER + similarity, fp32, batch {args.batch}; wall time of the whole "
        f"`bertflow annotate` command (start-up, Ray and its workers included); every output holds each row once; "
        f"the fastest of {args.repeats} interleaved run(s) of each.",
        "",
        "| engine | wall s | rows/s | vs local |",
        "|---|---|---|---|",
    ]
    for r in rows:
        versus = "—" if r is rows[0] else f"{r['seconds'] / base - 1:+.1%} time"
        lines.append(f"| {r['setting']} | {r['seconds']:.0f} | {r['rows_per_s']:.0f} | {versus} |")
    lines += ["", f"Command: `python benchmarks/scale.py --texts {args.texts} --shard-rows {args.shard_rows} --repeats {args.repeats}"
              + (f" --gpu-id {args.gpu_id}" if args.gpu_id >= 0 else "") + "`"]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("scale-gpu" if args.gpu_id >= 0 else "scale-cpu", body)


if __name__ == "__main__":
    main()
