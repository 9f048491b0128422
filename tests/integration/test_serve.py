"""``bertflow serve`` over real HTTP on a real socket: records equal
``nlp.pipe``'s, concurrent requests share batches, every bad input gets its
4xx with one JSON error (the server stays up), the API key is enforced,
SIGTERM under load answers every accepted request, and Ray Serve replicas
give the same records."""
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Span
from spacy.training import Example

from bertflow.errors import BertflowError
from bertflow.files.loading import load_pipeline
from bertflow.inference.annotate import doc_record
from bertflow.serve.app import ServeSettings, _install_drain_signal, create_app
from bertflow.testing.fixtures import tiny_encoder_config
from bertflow.testing.http import free_port, running_server

KEY_ENV = "BERTFLOW_TEST_SERVE_KEY"
TEXTS = [f"text {i} about {'Paris ' * (i % 5)}and a good film" for i in range(40)] + ["", "   ", "日本語 😀 text"]


@Language.component("fail_on_boom")
def fail_on_boom(doc):
    if "boom" in doc.text:
        raise ValueError("this component fails on 'boom'")
    return doc


def build(tiny_bert_dir, *heads, fail=False):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder", name="encoder", config=tiny_encoder_config(tiny_bert_dir, window=32, stride=24))
    for head in heads:
        nlp.add_pipe(f"bertflow_{head}", name=head)
    doc = nlp.make_doc("a good film in Paris")
    doc.cats = {"POSITIVE": 1.0, "NEGATIVE": 0.0}
    doc.ents = [Span(doc, 4, 5, "LOC")]
    nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc)])
    if fail:
        nlp.add_pipe("fail_on_boom")
    return nlp


@pytest.fixture(scope="module")
def model_dir(tiny_bert_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "model"
    build(tiny_bert_dir, "textcat", "ner").to_disk(path)
    return path


@pytest.fixture(scope="module")
def url(model_dir):
    app = create_app(ServeSettings(model=str(model_dir), max_wait_ms=30, max_batch=16, max_texts=50,
                                   max_text_chars=300, max_body_bytes=8192))
    with running_server(app) as base:
        yield base


def expected_records(model_dir, texts):
    nlp = load_pipeline(model_dir)
    return [dict(doc_record(doc), row=i) for i, doc in enumerate(nlp.pipe(texts))]


def same(got, want):
    assert {k: v for k, v in got.items() if k not in ("cats", "row", "id")} == \
        {k: v for k, v in want.items() if k not in ("cats", "row", "id")}
    assert got.get("cats", {}) == pytest.approx(want.get("cats", {}), abs=1e-5)


async def post_each(url, texts, **kwargs):
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*[client.post("/annotate", json={"text": t}, **kwargs) for t in texts])


def batch_sizes(url, **kwargs):
    text = httpx.get(f"{url}/metrics", **kwargs).text
    count = float(re.search(r"^bertflow_batch_size_count (\S+)$", text, re.M).group(1))
    total = float(re.search(r"^bertflow_batch_size_sum (\S+)$", text, re.M).group(1))
    return count, total


def test_records_equal_nlp_pipe_and_concurrent_requests_share_batches(url, model_dir):
    want = expected_records(model_dir, TEXTS)
    before = batch_sizes(url)
    answers = asyncio.run(post_each(url, TEXTS))
    assert [a.status_code for a in answers] == [200] * len(TEXTS)
    for answer, expected in zip(answers, want):
        same(answer.json(), expected)
    count, total = (a - b for a, b in zip(batch_sizes(url), before))
    assert total == len(TEXTS) and count < len(TEXTS) / 2  # 43 one-text requests in far fewer batches
    listed = httpx.post(f"{url}/annotate", json={"texts": TEXTS[:5] + [{"text": TEXTS[5], "id": "x"}]}).json()
    assert [r["row"] for r in listed["records"]] == list(range(6)) and listed["records"][5]["id"] == "x"
    for got, expected in zip(listed["records"], want):
        same(got, expected)


def test_after_a_batch_texts_wait_for_company_from_when_the_model_is_free(monkeypatch):
    """A text that came in while a batch ran has waited longer than W when the
    model frees up; it still waits up to W from then for the texts that follow,
    instead of running alone (under load that is what fills batches)."""
    import bertflow.serve.batcher as batcher_module
    from bertflow.serve.batcher import DynamicBatcher, TextItem

    sizes = []

    def slow_run(nlp, items, **_):
        sizes.append(len(items))
        time.sleep(0.3)
        return [{"text": item.text} for item in items]

    monkeypatch.setattr(batcher_module, "run_texts", slow_run)

    async def scenario():
        batcher = DynamicBatcher(None, max_batch=8, max_wait_ms=250, use_pairs=False)
        first = asyncio.ensure_future(batcher.annotate([TextItem("a"), TextItem("b")]))
        await asyncio.sleep(0.05)
        during = asyncio.ensure_future(batcher.annotate([TextItem("c")]))  # arrives while a, b run
        await first
        await asyncio.sleep(0.05)  # c has waited 0.3 s > W now; d comes 0.05 s after the model freed up
        after = await batcher.annotate([TextItem("d")])
        await during
        batcher.close()
        return after

    assert asyncio.run(scenario()) == [{"text": "d", "row": 0}]
    assert sizes == [2, 2]  # c and d share a batch


def test_the_guard_answers_its_posts_from_the_body_and_hands_on_the_rest():
    """The POST endpoints are answered by the outermost layer from the body it
    read (the app behind it never sees them); other requests reach the app with
    that body replayed; an endpoint that raises is one JSON 500; each is counted."""
    from bertflow.serve.app import Guard
    from bertflow.serve.metrics import ServeMetrics

    reached = []

    async def app(scope, receive, send):
        reached.append((scope["method"], scope["path"], (await receive())["body"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def echo(body):
        return 201, {"got": json.loads(body), "text": "日本語 😀"}

    async def broken(body):
        raise RuntimeError("a bug in the endpoint")

    metrics = ServeMetrics()
    guard = Guard(app, api_key=None, max_body=1024, metrics=metrics, paths=["/echo", "/broken"],
                  posts={"/echo": echo, "/broken": broken})

    def call(method, path, body):
        sent, chunks = [], [{"type": "http.request", "body": body[:3], "more_body": True},
                            {"type": "http.request", "body": body[3:], "more_body": False}]

        async def receive():
            return chunks.pop(0)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "headers": [(b"content-length", b"%d" % len(body))]}
        asyncio.run(guard(scope, receive, send))
        headers = dict(sent[0]["headers"])
        assert int(headers.get(b"content-length", len(sent[1]["body"]))) == len(sent[1]["body"])
        return sent[0]["status"], sent[1]["body"]

    status, body = call("POST", "/echo", b'{"a": [1, 2]}')
    assert status == 201 and json.loads(body) == {"got": {"a": [1, 2]}, "text": "日本語 😀"} and reached == []
    status, body = call("POST", "/broken", b"{}")
    assert status == 500 and json.loads(body)["error"]["message"] == "RuntimeError: a bug in the endpoint"
    assert call("GET", "/echo", b"abcdef") == (204, b"") and reached == [("GET", "/echo", b"abcdef")]
    page = metrics.render()[0].decode()
    for endpoint, code in (("/echo", 201), ("/broken", 500), ("/echo", 204)):
        assert f'bertflow_requests_total{{endpoint="{endpoint}",status="{code}"}} 1.0' in page


def test_runners_take_even_shares_of_the_queue_side_by_side(monkeypatch):
    """With two runners, eight texts sent together run as two batches of four at
    the same time, each on its own runner's pipeline and thread; a text sent
    while both run waits for the first runner to free up."""
    import threading

    import bertflow.serve.batcher as batcher_module
    from bertflow.serve.batcher import DynamicBatcher, TextItem

    runs = []

    def slow_run(nlp, items, **_):
        start = time.perf_counter()
        time.sleep(0.3)
        runs.append((nlp, threading.get_ident(), len(items), start, time.perf_counter()))
        return [{"text": item.text} for item in items]

    monkeypatch.setattr(batcher_module, "run_texts", slow_run)

    async def scenario():
        batcher = DynamicBatcher(["copy 0", "copy 1"], max_batch=32, max_wait_ms=50, use_pairs=False)
        together = asyncio.ensure_future(batcher.annotate([TextItem(str(i)) for i in range(8)]))
        await asyncio.sleep(0.1)
        late = await batcher.annotate([TextItem("late")])
        records = await together
        batcher.close()
        return records, late

    records, late = asyncio.run(scenario())
    assert [r["text"] for r in records] == [str(i) for i in range(8)] and late == [{"text": "late", "row": 0}]
    (a, b, c) = sorted(runs, key=lambda run: run[3])
    assert (a[2], b[2], c[2]) == (4, 4, 1)
    assert {a[0], b[0]} == {"copy 0", "copy 1"} and a[1] != b[1]  # each copy on its own thread
    assert b[3] < a[4]  # side by side
    assert c[3] >= min(a[4], b[4])  # the late text ran once a runner was free


def test_runners_give_the_same_records_and_share_out_the_cores(model_dir):
    import torch

    before = torch.get_num_threads()
    try:
        app = create_app(ServeSettings(model=str(model_dir), runners=2))
        with running_server(app) as base:
            async def all_at_once():
                async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                    return await asyncio.gather(*(client.post("/annotate", json={"text": t}) for t in TEXTS))

            for answer, expected in zip(asyncio.run(all_at_once()), expected_records(model_dir, TEXTS)):
                same(answer.json(), expected)
            ready = httpx.get(f"{base}/ready").json()
            assert ready["runners"] == 2 and ready["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
            count, total = batch_sizes(base)
            assert total == len(TEXTS) and count < total  # concurrent requests shared batches
    finally:
        torch.set_num_threads(before)


BAD = [
    (b'{"texts": ["a"', 400, "E152"),  # malformed JSON
    (b'{"text": "caf\xe9"}', 400, "E153"),  # Latin-1, not UTF-8
    (b'{"texts": [1, 2]}', 422, "E154"),  # wrong type
    (b'{"text": ["a"]}', 422, "E154"),
    (b'{"texts": "a"}', 422, "E154"),
    (b'{"texts": []}', 422, "E142"),  # empty list
    (b'{}', 422, "E141"),
    (b'{"text": "a", "texts": ["b"]}', 422, "E141"),
    (b'{"texts": ["a"], "colour": 1}', 422, "E154"),  # unknown field
    (json.dumps({"texts": ["a"] * 51}).encode(), 413, "E143"),  # too many texts
    (json.dumps({"text": "a" * 301}).encode(), 413, "E144"),  # a text over the limit
    (b'{"text": "\\ud800 lone"}', 422, "E145"),  # a lone surrogate
    (b'{"text": "Where?", "question": "Who?"}', 422, "E146"),  # no QA head
    (b'{"texts": [{"text": "a", "question": "b", "text_pair": "c"}]}', 422, "E155"),
    (json.dumps({"text": "a " * 5000}).encode(), 413, "E147"),  # the body over the limit
    (b"[1, 2]", 422, "E154"),
]


@pytest.mark.parametrize("body,status,code", BAD)
def test_every_bad_input_gets_its_4xx_and_one_json_error(url, body, status, code):
    answer = httpx.post(f"{url}/annotate", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["code"] == code and error["status"] == status and error["message"]
    assert httpx.get(f"{url}/ready").status_code == 200  # the server is still there


def test_unknown_paths_and_methods_are_json_errors(url):
    for answer in (httpx.get(f"{url}/nope"), httpx.get(f"{url}/annotate"),
                   httpx.post(f"{url}/similarity", json={})):
        assert answer.status_code in (404, 405) and answer.json()["error"]["code"] == "E156"
    assert "POST /annotate" in httpx.get(f"{url}/nope").json()["error"]["message"]
    assert set(httpx.get(f"{url}/openapi.json").json()["paths"]) >= {"/annotate", "/ready", "/metrics"}


def test_a_text_that_breaks_a_component_gets_its_error_and_the_rest_are_answered(tiny_bert_dir):
    nlp = build(tiny_bert_dir, "textcat", fail=True)
    with running_server(create_app(ServeSettings(model="in-memory", max_wait_ms=50), nlp=nlp)) as url:
        texts = ["a good film", "boom goes the film", "a bad film"]
        answers = asyncio.run(post_each(url, texts))
        got = [a.json() for a in answers]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert "error" in got[1] and "boom" in got[1]["error"] and got[1]["text"] == texts[1]
        assert "cats" in got[0] and "cats" in got[2] and "error" not in got[0]
        listed = httpx.post(f"{url}/annotate", json={"texts": texts}).json()["records"]
        assert ["error" in r for r in listed] == [False, True, False]


def test_the_api_key_is_enforced_when_set(model_dir, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "s3cret-key")
    with running_server(create_app(ServeSettings(model=str(model_dir), api_key_env=KEY_ENV))) as url:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key"},
                        {"Authorization": "Basic s3cret-key"}):
            answer = httpx.post(f"{url}/annotate", json={"text": "a"}, headers=headers)
            assert answer.status_code == 401 and answer.json()["error"]["code"] == "E148"
            assert answer.headers["www-authenticate"] == "Bearer"
        good = {"Authorization": "Bearer s3cret-key"}
        assert httpx.post(f"{url}/annotate", json={"text": "a"}, headers=good).status_code == 200
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert httpx.get(f"{url}/metrics", headers=good).status_code == 200
        assert httpx.get(f"{url}/health").status_code == 200 and httpx.get(f"{url}/ready").status_code == 200
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(BertflowError, match=r"\[E150\]"):
        create_app(ServeSettings(model=str(model_dir), api_key_env=KEY_ENV))


def test_bad_settings_are_one_line_errors(model_dir, tmp_path):
    from bertflow.testing.fixtures import run_cli

    for args, code in ((["--max-batch", "0"], "E151"), (["--max-body-bytes", "10"], "E151"),
                       (["--threads", "-1"], "E151"), (["--runners", "0"], "E151"),
                       (["--engine", "k8s"], "E158"), (["--replicas", "2"], "E157")):
        result = run_cli(["serve", str(model_dir), *args])
        assert result.code == 1 and f"[{code}]" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = run_cli(["serve", str(tmp_path / "missing")])
    assert result.code == 1 and "missing" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_sigterm_flips_readiness_then_runs_the_servers_own_handler(model_dir):
    app = create_app(ServeSettings(model=str(model_dir)))
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda *_: seen.append(app.state.draining))
    try:
        _install_drain_signal(app)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert seen == [True]  # readiness was already false when the server's handler ran
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_ready(url, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not become ready")


@pytest.mark.slow
def test_sigterm_under_load_answers_every_accepted_request(model_dir):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "bertflow", "serve", str(model_dir), "--port", str(port),
                             "--max-wait-ms", "300", "--max-batch", "8", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_ready(url, proc)
        want = expected_records(model_dir, TEXTS)

        async def load_then_term():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                sent = [asyncio.ensure_future(client.post("/annotate", json={"text": t})) for t in TEXTS]
                await asyncio.sleep(0.5)  # all sent and accepted, most still queued (8 texts a batch, 300 ms)
                proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*sent)

        answers = asyncio.run(load_then_term())
        assert [a.status_code for a in answers] == [200] * len(TEXTS)
        for answer, expected in zip(answers, want):
            same(answer.json(), expected)
        # uvicorn ends by re-raising the signal it handled: the exit status says SIGTERM stopped it
        assert proc.wait(60) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.TransportError):  # and then it is gone
            httpx.get(f"{url}/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_workers_share_out_the_cores_and_give_the_same_records(model_dir):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "bertflow", "serve", str(model_dir), "--port", str(port),
                             "--workers", "2", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_ready(url, proc)
        want = expected_records(model_dir, TEXTS)

        async def each_alone():  # one connection per text: the kernel spreads them over both workers
            async def one(text):
                async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                    return (await client.post("/annotate", json={"text": text})).json()
            return await asyncio.gather(*(one(t) for t in TEXTS))

        for answer, expected in zip(asyncio.run(each_alone()), want):
            same(answer, expected)
        ready = [httpx.get(f"{url}/ready").json() for _ in range(40)]
        assert {r["threads"] for r in ready} == {max(1, len(os.sched_getaffinity(0)) // 2)}
        assert proc.pid not in {r["pid"] for r in ready}  # answered by the worker processes
    finally:
        proc.terminate()
        proc.wait(60)


def test_threads_sets_the_models_torch_threads(model_dir):
    import torch

    before = torch.get_num_threads()
    try:
        app = create_app(ServeSettings(model=str(model_dir), threads=1))
        with running_server(app) as base:
            assert httpx.get(f"{base}/ready").json()["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_the_loaded_pipeline_is_kept_out_of_the_cyclic_collector(model_dir):
    """A full collection under load would walk every object of the model with the GIL held
    (a pause for every request in flight); the app freezes what it loaded, so it is skipped."""
    import gc

    try:
        app = create_app(ServeSettings(model=str(model_dir)))
        nlp = app.state.nlp
        tracked = gc.get_objects()
        assert gc.get_freeze_count() > 0
        assert not any(o is nlp or o is nlp.vocab or o is nlp.get_pipe("encoder") for o in tracked)
    finally:
        gc.unfreeze()


@pytest.mark.slow
def test_ray_serve_replicas_give_the_same_records(model_dir):
    import ray
    from bertflow.serve.run import serve_ray

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = None
    try:  # Ray is shut down whatever happens, so the next test module starts its own
        serve = serve_ray(ServeSettings(model=str(model_dir), max_wait_ms=20), host="127.0.0.1", port=port,
                          replicas=2, address=None, block=False)
        want = expected_records(model_dir, TEXTS)
        answers = asyncio.run(post_each(url, TEXTS))
        assert [a.status_code for a in answers] == [200] * len(TEXTS)
        for answer, expected in zip(answers, want):
            same(answer.json(), expected)
        assert httpx.post(f"{url}/annotate", json={"texts": []}).json()["error"]["code"] == "E142"
    finally:
        if serve is not None:
            serve.shutdown()
        ray.shutdown()
