"""Dynamic batching for ``bertflow serve``: texts from concurrent requests
share one ``nlp.pipe`` batch.

Every text of a request joins one queue. A collector task takes up to
``max_batch`` texts once the oldest waiting text has waited ``max_wait_ms``,
counted from when the model became free if that is later (or at once when
``max_batch`` are waiting), and hands the batch to the one model thread. It
waits for company only while requests come in together (the last batch held
more than one text): a lone client is not made to wait for others that are
not there. The batch runs off the event loop, so
the server keeps answering while it runs; texts that arrive meanwhile are
the next batch. Each text's
record goes back to its own request, in order. A plugin endpoint's call runs
on the same thread, between batches, so the pipeline is used by one thread
at a time.
"""
import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Union

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


class DynamicBatcher:
    """Queues texts from any number of requests and runs them in shared batches.

    nlp (Language): the pipeline; only the model thread touches it.
    max_batch (int): at most this many texts per batch.
    max_wait_ms (float): how long the oldest waiting text waits for company.
    use_pairs (bool): whether questions become ``doc._.text_pair``.
    observe (Callable): ``observe(batch_size, queue_waits, seconds)`` after each batch (metrics).
    """

    def __init__(self, nlp: Language, *, max_batch: int, max_wait_ms: float, use_pairs: bool,
                 observe: Optional[Callable[[int, List[float], float], None]] = None):
        self.nlp, self.max_batch, self.max_wait = nlp, max_batch, max_wait_ms / 1000
        self.use_pairs, self.observe = use_pairs, observe
        self._queue: Deque[Waiting] = collections.deque()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bertflow-model")
        self._wake: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None
        self.busy = False
        self._last_size = 0
        self._batches = 0
        self._free_since = 0.0  # when the model thread last finished a batch

    @property
    def depth(self) -> int:
        """Texts waiting for a batch."""
        return len(self._queue)

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
        """``fn()`` on the model thread (between batches)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _collect(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            while not self._queue:
                wake.clear()
                await wake.wait()
            # Company is waited for from when the model became free: under load the oldest text has
            # waited through the last batch already, and starting at once would run the few texts that
            # came back first while the rest are still being read (small batches, each sharing the
            # cores with the server's own work).
            deadline = max(self._queue[0][3], self._free_since) + (self.max_wait if self._last_size > 1 else 0.0)
            while len(self._queue) < self.max_batch and (left := deadline - time.perf_counter()) > 0:
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), left)
                except asyncio.TimeoutError:
                    break
            take = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            take = [w for w in take if not w[2].done()]  # a request that went away (client disconnected)
            self._last_size = len(take)
            if take:
                await self._run(take)
                self._free_since = time.perf_counter()

    async def _run(self, batch: List[Waiting]) -> None:
        started = time.perf_counter()
        waits = [started - w[3] for w in batch]
        self.busy = True
        try:
            groups: Dict[bool, List[Waiting]] = {}
            for w in batch:  # vectors or not is a per-request option: one run per kind
                groups.setdefault(w[1], []).append(w)
            for vectors, group in groups.items():
                items = [w[0] for w in group]
                try:
                    records = await self.call(lambda: self._annotate(items, vectors))
                except Exception as err:  # noqa: BLE001  (outside any component: every text of it gets the error)
                    records = [{"text": it.text, "error": f"{type(err).__name__}: {err}"} for it in items]
                for (_, _, fut, _), rec in zip(group, records):
                    if not fut.done():
                        fut.set_result(rec)
        finally:
            self.busy = False
        if self.observe is not None:
            self.observe(len(batch), waits, time.perf_counter() - started)

    def _annotate(self, items: List[TextItem], vectors: bool) -> List[Dict[str, Any]]:
        # on the model thread
        records = run_texts(self.nlp, items, use_pairs=self.use_pairs, vectors=vectors)
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
        self._executor.shutdown(wait=True)
