"""Dynamic batching for ``bertflow serve``: texts from concurrent requests
share one ``nlp.pipe`` batch.

Every text of a request joins one queue. A collector task takes up to
``max_batch`` texts once the oldest waiting text has waited ``max_wait_ms``,
counted from when a runner became free if that is later (or at once when
``max_batch`` are waiting), and hands the batch to that runner: a copy of the
pipeline with its own thread. It waits for company only while requests come
in together (the last batch held more than one text): a lone client is not
made to wait for others that are not there. Batches run off the event loop,
so the server keeps answering while they run; texts that arrive meanwhile
are the next batch. With several runners, batches run side by side, each
runner taking the next one when it frees up (one queue: no runner idles while
another has a backlog, as separate worker processes would when their
connections are unevenly spread). Each text's record goes back to its own
request, in order. A plugin endpoint's call runs on the first runner's
thread, between its batches, so each pipeline is used by one thread at a
time.
"""
import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set, Tuple, Union

from spacy.language import Language

from bertflow.encoder.heap import release_freed_memory
from bertflow.inference.annotate import annotate_rows, row_record

# Batches between handing the heap's freed pages back to the OS: every batch has its own
# shapes, and glibc's free space fragments under them (a 10-minute soak: RSS 890 -> 1,211 MB)
TRIM_EVERY = 50


@dataclass(frozen=True)
class TextItem:
    """One text of a request, with its optional question (``doc._.text_pair``) and id."""

    text: str
    question: Optional[str] = None
    id: Optional[Union[str, int]] = None


def run_texts(nlp: Language, items: List[TextItem], *, use_pairs: bool, vectors: bool = False) -> List[Dict[str, Any]]:
    """Records for ``items`` in order, as ``bertflow annotate`` writes them
    (``row`` is the index in ``items``): one ``nlp.pipe`` batch; a text that
    makes a component raise gets its error in its own record."""
    records: List[Optional[Dict[str, Any]]] = [None] * len(items)

    def write(row, rec) -> None:
        records[row[0]] = row_record(row, rec)

    rows = [(i, item.id, item.text, item.question, None) for i, item in enumerate(items)]
    annotate_rows(nlp, rows, write, batch_size=max(len(rows), 1), vectors=vectors, use_pairs=use_pairs,
                  chunk_size=max(len(rows), 1))
    return records  # type: ignore[return-value]


Waiting = Tuple[TextItem, bool, "asyncio.Future[Dict[str, Any]]", float]  # item, vectors, its answer, queued at


@dataclass
class Runner:
    """One copy of the pipeline and the one thread that uses it."""

    nlp: Language
    executor: ThreadPoolExecutor
    busy: bool = False
    size: int = 0  # texts in the batch it runs
    free_since: float = 0.0  # when it last finished a batch


class DynamicBatcher:
    """Queues texts from any number of requests and runs them in shared batches.

    nlp (Language or a list of them): the pipeline, or several copies of it
        (runners): each copy has its own thread, and a free runner takes the
        next batch from the one queue, so batches run side by side.
    max_batch (int): at most this many texts per batch.
    max_wait_ms (float): how long the oldest waiting text waits for company.
    use_pairs (bool): whether questions become ``doc._.text_pair``.
    observe (Callable): ``observe(batch_size, queue_waits, seconds)`` after each batch (metrics).
    """

    def __init__(self, nlp: Union[Language, Sequence[Language]], *, max_batch: int, max_wait_ms: float,
                 use_pairs: bool, observe: Optional[Callable[[int, List[float], float], None]] = None):
        pipelines = list(nlp) if isinstance(nlp, (list, tuple)) else [nlp]
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.use_pairs, self.observe = use_pairs, observe
        self.runners = [Runner(p, ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bertflow-model-{i}"))
                        for i, p in enumerate(pipelines)]
        self._queue: Deque[Waiting] = collections.deque()
        self._wake: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None
        self._running: Set[asyncio.Task] = set()
        self._last_size = 0
        self._batches = 0

    @property
    def depth(self) -> int:
        """Texts waiting for a batch."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """Whether some batch is running."""
        return any(r.busy for r in self.runners)

    def _start(self) -> asyncio.Event:
        # Started on first use inside the serving event loop (uvicorn's or a Ray Serve replica's).
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._collect())
        return self._wake  # type: ignore[return-value]

    async def annotate(self, items: List[TextItem], vectors: bool = False) -> List[Dict[str, Any]]:
        """The records of ``items``, in order, each computed in some shared batch."""
        wake = self._start()
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        futures = [loop.create_future() for _ in items]
        self._queue.extend((item, vectors, fut, now) for item, fut in zip(items, futures))
        wake.set()
        records = await asyncio.gather(*futures)
        return [dict(rec, row=i) for i, rec in enumerate(records)]

    async def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the first runner's thread (between its batches): ``fn`` may use that runner's pipeline."""
        return await asyncio.get_running_loop().run_in_executor(self.runners[0].executor, fn)

    async def _collect(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            while not self._queue or all(r.busy for r in self.runners):
                wake.clear()
                await wake.wait()
            runner = next(r for r in self.runners if not r.busy)
            # Company is waited for from when the runner became free: under load the oldest text has
            # waited through the last batch already, and starting at once would run the few texts that
            # came back first while the rest are still being read (small batches, each sharing the
            # cores with the server's own work).
            deadline = max(self._queue[0][3], runner.free_since) + (self.max_wait if self._last_size > 1 else 0.0)
            while len(self._queue) < self._share() and (left := deadline - time.perf_counter()) > 0:
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), left)
                except asyncio.TimeoutError:
                    break
            take = [self._queue.popleft() for _ in range(min(self._share(), len(self._queue)))]
            take = [w for w in take if not w[2].done()]  # a request that went away (client disconnected)
            self._last_size = len(take)
            if take:
                runner.busy, runner.size = True, len(take)
                task = asyncio.get_running_loop().create_task(self._run(runner, take))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    def _share(self) -> int:
        """The most texts the next batch takes: ``max_batch``; with several runners, the texts
        waiting or running shared out evenly among them, so under load each runner runs an equal
        share side by side (rather than one running a full batch while the next gathers stragglers)."""
        if len(self.runners) == 1:
            return self.max_batch
        load = len(self._queue) + sum(r.size for r in self.runners if r.busy)
        return max(1, min(self.max_batch, -(-load // len(self.runners))))

    async def _run(self, runner: Runner, batch: List[Waiting]) -> None:
        started = time.perf_counter()
        waits = [started - w[3] for w in batch]
        try:
            groups: Dict[bool, List[Waiting]] = {}
            for w in batch:  # vectors or not is a per-request option: one run per kind
                groups.setdefault(w[1], []).append(w)
            for vectors, group in groups.items():
                items = [w[0] for w in group]
                try:
                    records = await asyncio.get_running_loop().run_in_executor(
                        runner.executor, self._annotate, runner.nlp, items, vectors)
                except Exception as err:  # noqa: BLE001  (outside any component: every text of it gets the error)
                    records = [{"text": it.text, "error": f"{type(err).__name__}: {err}"} for it in items]
                for (_, _, fut, _), rec in zip(group, records):
                    if not fut.done():
                        fut.set_result(rec)
        finally:
            runner.busy = False
            runner.free_since = time.perf_counter()
            if self._wake is not None:
                self._wake.set()  # the collector may be waiting for a free runner
        if self.observe is not None:
            self.observe(len(batch), waits, time.perf_counter() - started)

    def _annotate(self, nlp: Language, items: List[TextItem], vectors: bool) -> List[Dict[str, Any]]:
        # on the runner's thread
        records = run_texts(nlp, items, use_pairs=self.use_pairs, vectors=vectors)
        self._batches += 1
        if self._batches % TRIM_EVERY == 0:
            release_freed_memory()
        return records

    async def drain(self) -> None:
        """Wait until every queued text has its record."""
        while self._queue or self.busy:
            await asyncio.sleep(0.01)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for runner in self.runners:
            runner.executor.shutdown(wait=True)
