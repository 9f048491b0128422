"""Prometheus metrics of ``bertflow serve`` (``GET /metrics``): requests by
endpoint and status, request latency, batch sizes, queue wait, batch time,
texts and texts answered with an error, queue depth. Each app has its own
registry; with ``--workers N`` each worker process reports its own."""
import time
from contextlib import contextmanager
from typing import Callable, Dict, List, Tuple

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServeMetrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry()
        self.requests = Counter("bertflow_requests", "HTTP requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=registry)
        self.latency = Histogram("bertflow_request_seconds", "Time from request to response, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=registry)
        self.batch_size = Histogram("bertflow_batch_size", "Texts per model batch", buckets=BATCH_BUCKETS,
                                    registry=registry)
        self.queue_wait = Histogram("bertflow_queue_wait_seconds", "Time a text waited for its batch",
                                    buckets=LATENCY_BUCKETS, registry=registry)
        self.batch_seconds = Histogram("bertflow_batch_seconds", "Time the model spent on a batch",
                                       buckets=LATENCY_BUCKETS, registry=registry)
        self.n_texts = Counter("bertflow_texts", "Texts annotated", registry=registry)
        self.text_errors = Counter("bertflow_text_errors", "Texts answered with an error in their record",
                                   registry=registry)
        self.queue_depth = Gauge("bertflow_queue_depth", "Texts waiting for a batch", registry=registry)

    @contextmanager
    def request(self, endpoint: str, status: List[int]):
        """Count and time one request; ``status[0]`` is read when it is answered."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.requests.labels(endpoint, str(status[0])).inc()
            self.latency.labels(endpoint).observe(time.perf_counter() - start)

    def batch(self, size: int, waits: List[float], seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        for wait in waits:
            self.queue_wait.observe(wait)

    def texts(self, records: List[Dict]) -> None:
        self.n_texts.inc(len(records))
        self.text_errors.inc(sum("error" in r for r in records))

    def watch_queue(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(depth)

    def render(self) -> Tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
