"""Data-parallel training on torch.distributed: ``bertflow train`` under torchrun.

Every rank builds the same pipeline from the same config, takes rank 0's
initial weights and reads the same global batches (the same seed shuffles
the same corpus); each trains on its own share of each batch. Before every
optimizer step the gradients of every trainable weight, the encoder's torch
parameters and the heads' thinc parameters alike, are averaged across ranks
in a few large buckets, so every rank takes the same step and N ranks train
step for step as one process on the whole batch. Rank 0 evaluates, logs and
writes ``model-best``/``model-last``; the others wait for its score.

What makes it step for step: a head's loss is a mean over its units
(examples, tokens, pairs), and a mean over one rank's share is not a share
of the mean over the batch. The losses therefore divide by
``loss_denominator(count)``: the count itself in one process, and in
data-parallel training the batch-wide count over the number of ranks, so
that the average of the ranks' gradients is the whole batch's gradient.

spaCy's own training loop (``spacy.training.loop.train``) runs unchanged;
this module connects to it at three points: the batches each rank reads,
the evaluation (rank 0 scores, every rank gets the score, so early stopping
agrees), and the moment between the backward pass and the optimizer step
(each trainable component's ``finish_update``).
"""
import contextlib
import hashlib
import os
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from bertflow.errors import BertflowError, Errors
from bertflow.heads.losses import batch_wide_counts

#: elements per all-reduce: large enough that a 22M-weight encoder needs a handful of collectives
BUCKET_ELEMENTS = 4 * 1024 * 1024

def _registry():
    from spacy.util import registry

    return registry


def launch_info() -> Tuple[int, int, int]:
    """(rank, world size, local rank) from the variables torchrun (or Slurm
    through torchrun, or Ray Train) sets; (0, 1, 0) when launched alone."""
    env = os.environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise BertflowError(Errors.E080.format(err=err)) from None
    return rank, world, local


def share_of_batch(batch: Sequence[Any], rank: int, world: int, group_of: Optional[Callable[[Any], Any]] = None) -> list:
    """Rank ``rank``'s share of ``batch``: contiguous, as equal in examples
    as the groups allow, never splitting a group (consecutive examples with
    the same non-None ``group_of(example)``, e.g. the two sides of a
    similarity pair). Empty when the batch has fewer groups than ranks."""
    units: List[List[Any]] = []
    last = object()
    for item in batch:
        key = group_of(item) if group_of is not None else None
        if units and key is not None and key == last:
            units[-1].append(item)
        else:
            units.append([item])
        last = key
    if len(units) < world:
        return []
    # cut before the unit whose start is nearest to each k/world of the examples
    starts, total = [], 0
    for unit in units:
        starts.append(total)
        total += len(unit)
    cuts = [0]
    for k in range(1, world):
        target = k * total / world
        best = min(range(cuts[-1] + 1, len(units) - (world - k) + 1), key=lambda i: abs(starts[i] - target))
        cuts.append(best)
    cuts.append(len(units))
    return [item for unit in units[cuts[rank]:cuts[rank + 1]] for item in unit]


def _group_reader(config) -> Optional[Callable[[Any], Any]]:
    """The batcher's grouping (``bertflow.batch_by_group.v1``'s ``group_attr``), if it has one."""
    batcher = dict(config["training"].get("batcher", {}))
    attr = batcher.get("group_attr", "group" if batcher.get("@batchers") == "bertflow.batch_by_group.v1" else None)
    if not attr:
        return None

    def group_of(example):
        ref = example.reference
        return getattr(ref._, attr) if ref.has_extension(attr) else None

    return group_of


class _Weights:
    """Every trainable weight of the pipeline, in the same order on every
    rank: the thinc parameters of each trainable component's model and the
    torch parameters inside its PyTorch shims (frozen torch layers excluded)."""

    def __init__(self, components: Sequence[Tuple[str, Any]]):
        from thinc.shims import PyTorchShim

        self.thinc: List[Tuple[Any, str]] = []
        self.torch: List[Any] = []
        seen_nodes, seen_tensors = set(), set()
        for _, proc in components:
            for node in proc.model.walk():
                if node.id in seen_nodes:
                    continue
                seen_nodes.add(node.id)
                self.thinc.extend((node, name) for name in node.param_names if node.has_param(name))
                for shim in node.shims:
                    if isinstance(shim, PyTorchShim) and id(shim) not in seen_tensors:
                        seen_tensors.add(id(shim))
                        self.torch.extend(p for p in shim._model.parameters() if p.requires_grad)

    def values(self) -> List[Any]:
        """Torch views of the weights (writing into them writes the weights)."""
        from thinc.api import xp2torch

        return [xp2torch(node.get_param(name)) for node, name in self.thinc] + [p.data for p in self.torch]

    def gradients(self) -> List[Optional[Any]]:
        """Torch views of the gradients, None where a weight has none this step."""
        from thinc.api import xp2torch

        grads = [xp2torch(node.get_grad(name)) if node.has_grad(name) else None for node, name in self.thinc]
        return grads + [p.grad for p in self.torch]

    def set_gradient(self, index: int, value) -> None:
        """Give weight ``index`` the gradient ``value`` (it had none on this rank)."""
        from thinc.api import torch2xp

        if index < len(self.thinc):
            node, name = self.thinc[index]
            node.set_grad(name, torch2xp(value.reshape(node.get_param(name).shape).contiguous()))
        else:
            param = self.torch[index - len(self.thinc)]
            param.grad = value.reshape(param.shape).to(param.dtype).clone()


def _buckets(sizes: Sequence[int], limit: int = BUCKET_ELEMENTS) -> Iterator[List[int]]:
    """Indices of consecutive tensors whose sizes add up to at most ``limit`` (one alone may exceed it)."""
    bucket, filled = [], 0
    for i, size in enumerate(sizes):
        if bucket and filled + size > limit:
            yield bucket
            bucket, filled = [], 0
        bucket.append(i)
        filled += size
    if bucket:
        yield bucket


class Trainer:
    """The process group and the hooks that make spaCy's loop data-parallel."""

    def __init__(self, rank: int, world: int, device):
        self.rank, self.world, self.device = rank, world, device
        self.in_update = False
        self.pending = False  # gradients from nlp.update not yet averaged
        self.weights: Optional[_Weights] = None
        self.sync_seconds, self.syncs = 0.0, 0
        self.skipped_batches = 0
        self._losses_seen: Dict[str, float] = {}
        self._losses_ref: Optional[dict] = None
        self._last_losses: Optional[dict] = None  # the losses dict spaCy's loop passed to nlp.update
        self._encoder_names: set = set()

    # ---- collectives -------------------------------------------------------------------------------
    def _tensor(self, values, dtype):
        import torch

        return torch.tensor(values, dtype=dtype, device=self.device)

    def global_count(self, count: float) -> float:
        import torch

        total = self._tensor([count], torch.float64)
        _dist().all_reduce(total)
        return max(float(total.item()), 1.0) / self.world

    def broadcast_weights(self) -> None:
        """Every rank starts from rank 0's initialised weights."""
        self._bucketed(self.weights.values(), lambda flat: _dist().broadcast(flat, src=0, async_op=True),
                       average=False)

    def average_gradients(self) -> None:
        """Average every trainable weight's gradient across ranks, in a few
        bucketed all-reduces. A weight without a gradient on some rank counts
        as zero there; one without a gradient on every rank keeps none."""
        import torch

        start = time.perf_counter()
        grads = self.weights.gradients()
        present = self._tensor([0 if g is None else 1 for g in grads], torch.int32)
        _dist().all_reduce(present)
        anywhere = [i for i, n in enumerate(present.tolist()) if n > 0]
        missing = [i for i in anywhere if grads[i] is None]
        if missing:  # zeros here; the average still counts this rank
            values = self.weights.values()
            for i in missing:
                self.weights.set_gradient(i, torch.zeros_like(values[i], dtype=torch.float32))
            grads = self.weights.gradients()
        self._bucketed([grads[i] for i in anywhere], lambda flat: _dist().all_reduce(flat, async_op=True),
                       average=True)
        self.sync_seconds += time.perf_counter() - start
        self.syncs += 1

    def _bucketed(self, tensors: List[Any], collective: Callable, *, average: bool) -> None:
        """Run ``collective`` on ``tensors`` packed into flat float32 buckets:
        every bucket's operation is started before the first is waited for, so
        the transfers overlap with packing and unpacking."""
        import torch

        pending = []
        for bucket in _buckets([t.numel() for t in tensors]):
            members = [tensors[i] for i in bucket]
            flat = torch.cat([t.reshape(-1).to(device=self.device, dtype=torch.float32) for t in members])
            pending.append((members, flat, collective(flat)))
        for members, flat, work in pending:
            work.wait()
            if average:
                flat /= self.world
            offset = 0
            for t in members:
                n = t.numel()
                t.copy_(flat[offset:offset + n].view(t.shape).to(t.dtype))
                offset += n

    def average_losses(self, losses: dict, names: Sequence[str]) -> None:
        """Make this step's loss increments the batch-wide ones on every rank,
        so rank 0 logs what one process would. A head's loss is a mean
        (averaged across ranks); the encoder's is a sum of squared output
        gradients, which on each rank are ``world`` times the batch-wide ones."""
        import torch

        if losses is not self._losses_ref:  # spaCy's loop starts a new dict after each evaluation
            self._losses_ref, self._losses_seen = losses, {}
        deltas = [losses.get(n, 0.0) - self._losses_seen.get(n, 0.0) for n in names]
        total = self._tensor(deltas, torch.float64)
        _dist().all_reduce(total)
        for name, value in zip(names, total.tolist()):
            scale = self.world ** 2 if name in self._encoder_names else self.world
            if name in losses:
                losses[name] = self._losses_seen.get(name, 0.0) + value / scale
            self._losses_seen[name] = losses.get(name, 0.0)

    def same_batch(self, batch: Sequence[Any]) -> None:
        """Stop with a clear error if the ranks' global batches differ (their
        random states drifted apart, or the corpus differs between machines)."""
        import torch

        digest = hashlib.blake2b("\x1e".join(eg.reference.text for eg in batch).encode("utf8"), digest_size=7)
        value = int.from_bytes(digest.digest(), "big")
        both = self._tensor([value, -value], torch.int64)
        _dist().all_reduce(both, op=_dist().ReduceOp.MAX)
        if both[0].item() != -both[1].item():
            raise BertflowError(Errors.E081.format(rank=self.rank))

    # ---- spaCy's loop ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def attached(self, nlp, frozen: Sequence[str]) -> Iterator[None]:
        """Connect to ``nlp`` and to spaCy's training loop for the length of the block."""
        from spacy.training import loop

        from bertflow.encoder.component import EncoderComponent

        components = [(name, proc) for name, proc in nlp.pipeline
                      if name not in frozen and getattr(proc, "is_trainable", False)
                      and getattr(proc, "model", None) not in (True, False, None)]
        self.weights = _Weights(components)
        self._encoder_names = {name for name, proc in components if isinstance(proc, EncoderComponent)}
        names = [name for name, _ in components]
        group_of = _group_reader(nlp.config)
        trainer = self
        original_update = nlp.update
        create_batches, create_evaluation = loop.create_train_batches, loop.create_evaluation_callback

        def update(examples, *args, losses=None, **kwargs):
            trainer.in_update, trainer.pending = True, True
            trainer._last_losses = losses
            try:
                return original_update(examples, *args, losses=losses, **kwargs)
            finally:
                trainer.in_update = False

        def step_hook(finish_update):
            def finish_update_after_averaging(sgd):
                if trainer.pending:  # the first trainable component of this step: average first
                    trainer.pending = False
                    trainer.average_gradients()
                    if trainer._last_losses is not None:
                        trainer.average_losses(trainer._last_losses, names)
                return finish_update(sgd)
            return finish_update_after_averaging

        def sharded_batches(nlp_, corpus, batcher, max_epochs):
            for epoch, batch in create_batches(nlp_, corpus, batcher, max_epochs):
                batch = list(batch)
                trainer.same_batch(batch)
                share = share_of_batch(batch, trainer.rank, trainer.world, group_of)
                if not share:  # fewer groups than ranks (an epoch's last scraps): every rank skips it
                    trainer.skipped_batches += 1
                    continue
                yield epoch, share

        def evaluation_on_rank_0(nlp_, dev_corpus, weights):
            evaluate = create_evaluation(nlp_, dev_corpus, weights)

            def evaluate_and_share():
                result = [evaluate() if trainer.rank == 0 else None]
                _dist().broadcast_object_list(result, src=0)
                return result[0]
            return evaluate_and_share

        nlp.update = update
        for _, proc in components:
            proc.finish_update = step_hook(proc.finish_update)
        loop.create_train_batches, loop.create_evaluation_callback = sharded_batches, evaluation_on_rank_0
        try:
            with batch_wide_counts(lambda count: trainer.global_count(count) if trainer.in_update else None):
                yield
        finally:
            loop.create_train_batches, loop.create_evaluation_callback = create_batches, create_evaluation
            for _, proc in components:
                proc.__dict__.pop("finish_update", None)
            nlp.__dict__.pop("update", None)


@_registry().loggers("bertflow.no_logger.v1")
def no_logger():
    """A training logger that logs nothing (the ranks other than 0)."""

    def setup(nlp, stdout, stderr):
        return (lambda info: None), (lambda: None)

    return setup


def _dist():
    import torch.distributed as dist

    return dist
