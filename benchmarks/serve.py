"""Serving: `bertflow serve` (dynamic batching) against offline `nlp.pipe` and
a naive per-request server, side by side in one run, over real HTTP.

The pipeline: minilm-l6 + bertflow_textcat + bertflow_ner + bertflow_similarity
(speed.py's, heads initialised: speed does not depend on their weights),
saved and served from disk. The texts: speed.py's 2,000 real sentences (SST-2
dev, then CoNLL-2003 dev). Each server runs in its own process; the load
generator (asyncio + aiohttp, one keep-alive connection per client) runs here:
C clients each send one text per request, the next when the last is
answered, until every text has been sent once. Throughput is texts/s over
the whole pass (the fastest of --repeats passes, or of
--headline-repeats at the headline client count, as offline's); latency is
per request. Every answer is checked against the
text it was sent for (none lost, none swapped).

  offline   nlp.pipe(texts, batch_size=32) in one process on every core,
            no HTTP; a pass before each 32-client pass too (the machine's
            speed drifts; the fastest offline pass counts)
  bertflow  bertflow serve MODEL --max-batch 32 --max-wait-ms 5 --runners N
            (N copies of the model in one worker, one queue)
  naive     the same framework (FastAPI on uvicorn) calling nlp(text) per
            request, one at a time per worker (a lock: a spaCy pipeline is
            not shared between threads), on N uvicorn workers

Both servers run in each layout of --copies (default 1,2): N copies of the
model, each with cores // N torch threads, as `bertflow serve` shares them.

    python benchmarks/serve.py --data ../shared/data
    python benchmarks/serve.py --soak-minutes 10   # adds the soak: 32 clients for 10 minutes,
                                                   # one request in ten bad; no 5xx, none lost, RSS flat

Writes its section of benchmarks/BENCHMARKS.md.
"""
import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_section  # noqa: E402
from speed import bertflow_pipeline, load_texts  # noqa: E402

BAD_REQUESTS = [  # (path, body): each must get a 4xx
    ("/annotate", b'{"texts": ["a"'), ("/annotate", b'{"text": "caf\xe9"}'), ("/annotate", b'{"texts": [1]}'),
    ("/annotate", b'{"texts": []}'), ("/annotate", b"{}"), ("/annotate", json.dumps({"texts": ["a"] * 2000}).encode()),
    ("/annotate", json.dumps({"text": "a" * 200_001}).encode()), ("/annotate", b'{"text": "\\ud800"}'),
    ("/annotate", b'{"text": "a", "question": "b"}'), ("/nowhere", b"{}"),
]


def naive_app():
    """The naive peer's app (a uvicorn factory, one per worker): FastAPI calling
    nlp(text) per request; the model and torch threads come from the environment."""
    import threading

    import torch
    from fastapi import FastAPI

    from bertflow.files.loading import load_pipeline
    from bertflow.inference.annotate import doc_record

    if int(os.environ["NAIVE_THREADS"]):
        torch.set_num_threads(int(os.environ["NAIVE_THREADS"]))
    nlp = load_pipeline(os.environ["NAIVE_MODEL"])
    nlp("warm up")
    lock = threading.Lock()
    app = FastAPI()

    @app.post("/annotate")
    def annotate(body: dict):  # a sync endpoint: FastAPI runs it in its thread pool
        with lock:
            return dict(doc_record(nlp(body["text"])), row=0)

    @app.get("/ready")
    def ready():
        return {"ready": True}

    return app


def naive_server(model: str, port: int, workers: int) -> None:
    """The naive peer on ``workers`` uvicorn processes, the cores shared out among them by bertflow serve's rule."""
    import uvicorn

    from bertflow.serve.app import auto_threads

    os.environ.update(NAIVE_MODEL=model, NAIVE_THREADS=str(auto_threads(workers, 1)))
    uvicorn.run("serve:naive_app", factory=True, app_dir=str(Path(__file__).parent), host="127.0.0.1", port=port,
                workers=workers, log_level="warning")


def start_server(kind: str, model: Path, port: int, args, copies: int) -> subprocess.Popen:
    """bertflow serve with ``copies`` runners in one worker, or the naive server with ``copies`` workers."""
    if kind == "bertflow":
        command = [sys.executable, "-m", "bertflow", "serve", str(model), "--port", str(port), "--max-batch",
                   str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), "--runners", str(copies),
                   "--log-level", "warning"]
    else:
        command = [sys.executable, __file__, "--naive-server", str(model), "--port", str(port), "--copies",
                   str(copies)]
    proc = subprocess.Popen(command)
    import httpx

    for _ in range(1200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the {kind} server exited with {proc.returncode}")
        time.sleep(0.25)
    raise SystemExit(f"the {kind} server did not become ready")


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and every process under it (uvicorn's workers)."""
    total = 0.0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) / 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += rss_mb(int(child))
    return total


async def load(url: str, texts, clients: int):
    """Every text once, ``clients`` at a time; (wall seconds, latencies, problems)."""
    import aiohttp

    latencies, problems, cursor = [], [], iter(range(len(texts)))
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=clients)) as client:
        async def one_client():
            for i in cursor:
                start = time.perf_counter()
                async with client.post("/annotate", json={"text": texts[i]}) as answer:
                    record = await answer.json()
                latencies.append(time.perf_counter() - start)
                if answer.status != 200 or record.get("text") != texts[i]:
                    problems.append((i, answer.status))
        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        return time.perf_counter() - start, latencies, problems


async def soak(url: str, texts, pid: int, minutes: float, clients: int = 32):
    """``clients`` for ``minutes``, one request in ten bad: counts by status, problems, RSS samples."""
    import aiohttp

    statuses, problems, rss = {}, [], []
    rng = random.Random(0)
    stop = time.monotonic() + minutes * 60
    async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=clients)) as client:
        async def one_client(k):
            n = 0
            while time.monotonic() < stop:
                n += 1
                if n % 10 == 0:
                    path, body = rng.choice(BAD_REQUESTS)
                    async with client.post(path, data=body, headers={"content-type": "application/json"}) as answer:
                        record = await answer.json(content_type=None)
                    if not 400 <= answer.status < 500 or "error" not in record:
                        problems.append(("bad request answered", answer.status))
                else:
                    text = texts[rng.randrange(len(texts))]
                    async with client.post("/annotate", json={"text": text}) as answer:
                        record = await answer.json(content_type=None)
                    if answer.status != 200 or record.get("text") != text:
                        problems.append(("text", answer.status))
                statuses[answer.status] = statuses.get(answer.status, 0) + 1

        async def sample():
            while time.monotonic() < stop:
                rss.append(rss_mb(pid))
                await asyncio.sleep(30)

        await asyncio.gather(sample(), *(one_client(k) for k in range(clients)))
    return statuses, problems, rss


def pct(values, q):
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else values[0] * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--clients", default="1,8,32,128")
    parser.add_argument("--copies", default="1,2", help="layouts to measure: copies of the model per server "
                        "(bertflow: --runners N in one worker; naive: N uvicorn workers), this machine's cores "
                        "shared out among them")
    parser.add_argument("--headline", type=int, default=32, help="the client count whose passes each follow an "
                        "offline pass")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--soak-minutes", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=2, help="passes per system and client count; the fastest counts")
    parser.add_argument("--headline-repeats", type=int, default=4, help="passes at the --headline client count, "
                        "each following an offline pass (the median of those paired ratios is reported too)")
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--naive-server", help=argparse.SUPPRESS)
    args = parser.parse_args()
    layouts = [int(w) for w in args.copies.split(",")]
    if args.naive_server:
        return naive_server(args.naive_server, args.port, layouts[0])  # --copies: its workers

    texts = load_texts(args.data, args.n)
    clients = [int(c) for c in args.clients.split(",")]
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        bertflow_pipeline(args, texts).to_disk(model)
        from bertflow.files.loading import load_pipeline

        nlp = load_pipeline(model)
        list(nlp.pipe(texts[:64], batch_size=32))
        offline_passes = []

        def offline_pass() -> float:
            start = time.perf_counter()
            list(nlp.pipe(texts, batch_size=32))
            offline_passes.append(len(texts) / (time.perf_counter() - start))
            return offline_passes[-1]

        for _ in range(args.repeats):
            offline_pass()
        print(json.dumps({"offline_docs_per_s": max(offline_passes)}), flush=True)

        results, rss, beside = {}, {}, {}
        for kind in ("bertflow", "naive"):
            for w in layouts:
                proc = start_server(kind, model, args.port, args, w)
                url = f"http://127.0.0.1:{args.port}"
                try:
                    asyncio.run(load(url, texts[:64], 32))  # warm up
                    for c in clients:
                        runs = []
                        for _ in range(args.headline_repeats if c == args.headline else args.repeats):
                            # the headline passes each follow an offline pass: the machine's speed drifts
                            near = offline_pass() if c == args.headline else None
                            runs.append(asyncio.run(load(url, texts, c)))
                            if near:
                                beside.setdefault((kind, w), []).append(len(texts) / runs[-1][0] / near)
                        wall, latencies, _ = min(runs, key=lambda run: run[0])  # the fastest pass, as offline
                        results[(kind, w, c)] = {"docs_per_s": len(texts) / wall, "p50": pct(latencies, 50),
                                                 "p95": pct(latencies, 95), "p99": pct(latencies, 99),
                                                 "problems": sum(len(run[2]) for run in runs)}
                        print(json.dumps({kind: {f"{w} copies, {c} clients": results[(kind, w, c)]}}), flush=True)
                    rss[(kind, w)] = rss_mb(proc.pid)
                finally:
                    proc.terminate()
                    proc.wait(120)
        offline = max(offline_passes)
        best = max(layouts, key=lambda w: results[("bertflow", w, args.headline)]["docs_per_s"]) \
            if args.headline in clients else layouts[0]
        soaked = None
        if args.soak_minutes > 0:  # last: it checks answers and memory, not speed
            proc = start_server("bertflow", model, args.port, args, best)
            try:
                soaked = asyncio.run(soak(f"http://127.0.0.1:{args.port}", texts, proc.pid, args.soak_minutes))
                print(json.dumps({"soak": {"statuses": soaked[0], "problems": len(soaked[1]), "rss": soaked[2]}}),
                      flush=True)
            finally:
                proc.terminate()
                proc.wait(120)
    write_report(args, results, rss, beside, offline, layouts, clients, cores, best, soaked)
    return None


def layout(copies: int, cores: int) -> str:
    threads = max(1, cores // copies)
    return f"{copies} × {threads} thread{'s' if threads > 1 else ''}"


def write_report(args, results, rss, beside, offline, layouts, clients, cores, best, soaked) -> None:
    def cell(kind, w, c):
        r = results[(kind, w, c)]
        return f"{r['docs_per_s']:.0f} | {r['p50']:.0f} / {r['p95']:.0f} / {r['p99']:.0f}"

    rows = []
    for c in clients:
        top_naive = max(results[("naive", w, c)]["docs_per_s"] for w in layouts)
        for w in layouts:
            b = results[("bertflow", w, c)]["docs_per_s"]
            rows.append(f"| {c} | {layout(w, cores)} | {cell('bertflow', w, c)} | {cell('naive', w, c)} | "
                        f"×{b / results[('naive', w, c)]['docs_per_s']:.2f} | ×{b / top_naive:.2f} | {b / offline:.0%} |")
    lost = sum(r["problems"] for r in results.values())
    head = ""
    if args.headline in clients:
        h = args.headline
        b = results[("bertflow", best, h)]["docs_per_s"]
        top_naive = max(layouts, key=lambda w: results[("naive", w, h)]["docs_per_s"])
        near = "; ".join(f"{layout(w, cores)}: " + " / ".join(f"{r:.0%}" for r in beside.get(("bertflow", w), []))
                         + f" (median {statistics.median(beside[('bertflow', w)]):.0%})"
                         for w in layouts if beside.get(("bertflow", w)))
        head = (f"\n**At {h} clients**: `bertflow serve --runners {best}` {b:.0f} docs/s = **{b / offline:.0%} of "
                f"offline** (the fastest offline pass of the run) and **×{b / results[('naive', top_naive, h)]['docs_per_s']:.2f}"
                f" the faster naive layout** ({layout(top_naive, cores)}). Each {h}-client pass against the offline "
                f"pass taken just before it: {near}.\n")
    soak_line = ""
    if soaked is not None:
        statuses, problems, samples = soaked
        n = sum(statuses.values())
        five = sum(v for k, v in statuses.items() if k >= 500)
        by_status = ", ".join(f"{k}: {v:,}" for k, v in sorted(statuses.items()))
        warm = samples[1:] or samples
        soak_line = (f"\n**Soak** (`--soak-minutes {args.soak_minutes:g}`, `--runners {best}`): 32 clients for "
                     f"{args.soak_minutes:g} minutes, "
                     f"one request in ten bad (malformed JSON, not UTF-8, wrong types, empty list, too many texts, "
                     f"a text over the limit, a lone surrogate, a question without a QA head, an unknown path): "
                     f"{n:,} requests ({by_status}); **{five} 5xx**, {len(problems)} wrong or lost answers; "
                     f"server RSS (all its processes) {warm[0]:.0f} MB after the first 30 s, {max(warm):.0f} MB at "
                     f"most, {warm[-1]:.0f} MB at the end; median of the first half's samples "
                     f"{statistics.median(warm[:len(warm) // 2] or warm):.0f} MB, of the second half's "
                     f"{statistics.median(warm[len(warm) // 2:]):.0f} MB (one sample every 30 s).\n")
    memory = ", ".join(f"{kind} {layout(w, cores)} {mb:.0f} MB" for (kind, w), mb in rss.items())
    body = f"""## Serving: bertflow serve (dynamic batching) vs offline nlp.pipe and a naive per-request server

`python benchmarks/serve.py --copies {args.copies}{f' --soak-minutes {args.soak_minutes:g}' if args.soak_minutes else ''}`
— {args.encoder} + textcat + NER + similarity heads, fp32; {args.n:,} real sentences (SST-2 dev, then CoNLL-2003 dev),
one text per request, C clients each waiting for its answer before the next (aiohttp, keep-alive); the servers in
their own processes, the clients in the benchmark's, all on this machine's {cores} cores. bertflow: `bertflow serve
MODEL --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g} --runners N`: N copies of the model in one
worker, each on its own thread with the cores shared out, taking batches from one queue; naive: FastAPI on uvicorn
calling `nlp(text)` per request on N uvicorn workers, one copy each, with the same threads.
Offline `nlp.pipe(batch_size=32)` in one process with every core, no HTTP: **{offline:.0f} docs/s**, the fastest of
{args.repeats} passes at the start and one before each {args.headline}-client pass. Each server figure is the fastest
of {args.repeats} passes ({args.headline_repeats} at {args.headline} clients; every pass's answers checked). Latency p50 / p95 / p99 in ms, of that pass.
Every answer matched its text ({lost} wrong or lost). Server RSS after the runs, all its processes: {memory}.
Machine: {machine()}.

| clients | model copies × torch threads | bertflow serve docs/s | latency ms | naive docs/s | latency ms | bertflow / naive, same layout | bertflow / faster naive | bertflow / offline |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
{head}{soak_line}"""
    if not args.no_write:
        write_section("serve", body)
    print(body)


if __name__ == "__main__":
    main()
