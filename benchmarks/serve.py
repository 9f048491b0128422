"""Serving: `bertflow serve` (dynamic batching) against offline `nlp.pipe` and
a naive per-request server, side by side in one run, over real HTTP.

The pipeline: minilm-l6 + bertflow_textcat + bertflow_ner + bertflow_similarity
(speed.py's, heads initialised: speed does not depend on their weights),
saved and served from disk. The texts: speed.py's 2,000 real sentences (SST-2
dev, then CoNLL-2003 dev). Each server runs in its own process; the load
generator (asyncio + aiohttp, one keep-alive connection per client) runs here:
C clients each send one text per request, the next when the last is
answered, until every text has been sent once. Throughput is texts/s over
the whole pass (the fastest of --repeats passes, as offline's); latency is
per request. Every answer is checked against the
text it was sent for (none lost, none swapped).

  offline   nlp.pipe(texts, batch_size=32) in one process, no HTTP
  bertflow  bertflow serve MODEL --max-batch 32 --max-wait-ms 5
  naive     the same framework (FastAPI on uvicorn) calling nlp(text) per
            request, one at a time (a lock: a spaCy pipeline is not shared
            between threads)

    python benchmarks/serve.py --data ../shared/data
    python benchmarks/serve.py --soak-minutes 10   # adds the soak: 32 clients for 10 minutes,
                                                   # one request in ten bad; no 5xx, none lost, RSS flat

Writes its section of benchmarks/BENCHMARKS.md.
"""
import argparse
import asyncio
import json
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


def naive_server(model: str, port: int) -> None:
    """The naive peer: FastAPI on uvicorn, nlp(text) per request."""
    import threading

    import uvicorn
    from fastapi import FastAPI

    from bertflow.files.loading import load_pipeline
    from bertflow.inference.annotate import doc_record

    nlp = load_pipeline(model)
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

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def start_server(kind: str, model: Path, port: int, args) -> subprocess.Popen:
    if kind == "bertflow":
        command = [sys.executable, "-m", "bertflow", "serve", str(model), "--port", str(port), "--max-batch",
                   str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), "--log-level", "warning"]
    else:
        command = [sys.executable, __file__, "--naive-server", str(model), "--port", str(port)]
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
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


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
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--soak-minutes", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=2, help="passes per system and client count; the fastest counts")
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--naive-server", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        return naive_server(args.naive_server, args.port)

    texts = load_texts(args.data, args.n)
    clients = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        bertflow_pipeline(args, texts).to_disk(model)
        from bertflow.files.loading import load_pipeline

        nlp = load_pipeline(model)
        list(nlp.pipe(texts[:64], batch_size=32))
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            list(nlp.pipe(texts, batch_size=32))
            best = min(best, time.perf_counter() - start)
        offline = len(texts) / best
        del nlp
        print(json.dumps({"offline_docs_per_s": offline}), flush=True)

        results, rss, soaked = {}, {}, None
        for kind in ("bertflow", "naive"):
            proc = start_server(kind, model, args.port, args)
            url = f"http://127.0.0.1:{args.port}"
            try:
                asyncio.run(load(url, texts[:64], 32))  # warm up
                for c in clients:
                    runs = [asyncio.run(load(url, texts, c)) for _ in range(args.repeats)]
                    wall, latencies, _ = min(runs, key=lambda run: run[0])  # the fastest pass, as offline
                    results[(kind, c)] = {"docs_per_s": len(texts) / wall, "p50": pct(latencies, 50),
                                          "p95": pct(latencies, 95), "p99": pct(latencies, 99),
                                          "problems": sum(len(run[2]) for run in runs)}
                    print(json.dumps({kind: {c: results[(kind, c)]}}), flush=True)
                rss[kind] = rss_mb(proc.pid)
            finally:
                proc.terminate()
                proc.wait(120)
        if args.soak_minutes > 0:  # last: it checks answers and memory, not speed
            proc = start_server("bertflow", model, args.port, args)
            try:
                soaked = asyncio.run(soak(f"http://127.0.0.1:{args.port}", texts, proc.pid, args.soak_minutes))
                print(json.dumps({"soak": {"statuses": soaked[0], "problems": len(soaked[1]), "rss": soaked[2]}}),
                      flush=True)
            finally:
                proc.terminate()
                proc.wait(120)

    rows = "\n".join(
        f"| {c} | {results[('bertflow', c)]['docs_per_s']:.0f} | "
        f"{results[('bertflow', c)]['p50']:.0f} / {results[('bertflow', c)]['p95']:.0f} / {results[('bertflow', c)]['p99']:.0f} | "
        f"{results[('naive', c)]['docs_per_s']:.0f} | "
        f"{results[('naive', c)]['p50']:.0f} / {results[('naive', c)]['p95']:.0f} / {results[('naive', c)]['p99']:.0f} | "
        f"×{results[('bertflow', c)]['docs_per_s'] / results[('naive', c)]['docs_per_s']:.2f} | "
        f"{results[('bertflow', c)]['docs_per_s'] / offline:.0%} |"
        for c in clients)
    lost = sum(r["problems"] for r in results.values())
    soak_line = ""
    if soaked is not None:
        statuses, problems, samples = soaked
        n = sum(statuses.values())
        five = sum(v for k, v in statuses.items() if k >= 500)
        by_status = ", ".join(f"{k}: {v:,}" for k, v in sorted(statuses.items()))
        warm = samples[1:] or samples
        soak_line = (f"\n**Soak** (`--soak-minutes {args.soak_minutes:g}`): 32 clients for {args.soak_minutes:g} minutes, "
                     f"one request in ten bad (malformed JSON, not UTF-8, wrong types, empty list, too many texts, "
                     f"a text over the limit, a lone surrogate, a question without a QA head, an unknown path): "
                     f"{n:,} requests ({by_status}); **{five} 5xx**, {len(problems)} wrong or lost answers; "
                     f"server RSS {warm[0]:.0f} MB after the first 30 s, {max(warm):.0f} MB at most, "
                     f"{warm[-1]:.0f} MB at the end.\n")
    body = f"""## Serving: bertflow serve (dynamic batching) vs offline nlp.pipe and a naive per-request server

`python benchmarks/serve.py{f' --soak-minutes {args.soak_minutes:g}' if args.soak_minutes else ''}`
— {args.encoder} + textcat + NER + similarity heads, fp32; {len(texts):,} real sentences (SST-2 dev, then CoNLL-2003 dev),
one text per request, C clients each waiting for its answer before the next (aiohttp, keep-alive; httpx's own CPU
cost on these 2 cores halved the server's figure at 128 clients); the servers in their own
processes, the clients in the benchmark's, all on this machine's cores. bertflow: `bertflow serve MODEL --max-batch
{args.max_batch} --max-wait-ms {args.max_wait_ms:g}`; naive: FastAPI on uvicorn calling `nlp(text)` per request.
Offline `nlp.pipe(batch_size=32)`, no HTTP: **{offline:.0f} docs/s**. Each figure is the fastest of {args.repeats} passes
(offline too; every pass's answers checked). Latency p50 / p95 / p99 in ms, of that pass.
Every answer matched its text ({lost} wrong or lost). Server RSS after the runs: bertflow {rss['bertflow']:.0f} MB,
naive {rss['naive']:.0f} MB.
Machine: {machine()}.

| clients | bertflow serve docs/s | latency ms | naive docs/s | latency ms | bertflow / naive | bertflow / offline |
|---|---|---|---|---|---|---|
{rows}
{soak_line}"""
    if not args.no_write:
        write_section("serve", body)
    print(body)
    return None


if __name__ == "__main__":
    main()
