"""The ``bertflow_encoder`` pipeline component: one forward pass per batch,
shared by every head that listens to it.

It extends spacy-transformers' ``Transformer`` pipe: heads use its
``TransformerListener`` (directly or through ``bertflow.EncoderListener.v1``),
outputs land in ``doc._.trf_data``, and ``doc._.trf_windows`` records how each
doc was windowed.
"""
import warnings
import os
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example, validate_examples
from spacy.util import minibatch
from spacy.vocab import Vocab
from spacy_transformers.annotation_setters import null_annotation_setter
from spacy_transformers.data_classes import FullTransformerBatch, TransformerData
from spacy_transformers.layers import TransformerListener
from spacy_transformers.pipeline_component import Transformer
from thinc.api import Model, Optimizer, set_dropout_rate

from bertflow.errors import BertflowError, Errors
from bertflow.encoder.extensions import TRF_DATA, TRF_WINDOWS, install_extensions, set_doc_values
from bertflow.encoder.batch import length_sorted_batches, split_docs
from bertflow.encoder.heap import release_freed_memory
from bertflow.encoder.serialization import guarded_hf_loading
from bertflow.encoder.hf_calls import clip_encoder_gradients, train_top_layers
from bertflow.encoder.model import EncoderModel, Pretokenized


# optimizer steps between returning the freed heap to the OS: often enough that a long CPU run stays flat,
# rarely enough that the trim's page faults cost little (heap.py)
TRIM_EVERY = 20

# padded wordpieces per sub-batch in pipe when max_batch_items = 0, by device: on a CPU a larger matrix
# product buys nothing and costs cache; a GPU needs big batches to fill its cores (16 rows of 4,096 wordpieces)
AUTO_BATCH_ITEMS = {"cpu": 4096, "cuda": 65536}

class EncoderComponent(Transformer):
    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], FullTransformerBatch],
        set_extra_annotations: Callable = null_annotation_setter,
        *,
        name: str = "bertflow_encoder",
        max_batch_items: int = 0,
        sort_buffer: int = 1024,
        frozen: bool = False,
        grad_clip_norm: float = 1.0,
        frozen_steps: int = 0,
        trainable_layers: int = 0,
    ):
        super().__init__(vocab, model, set_extra_annotations, name=name, max_batch_items=max_batch_items)
        self.cfg["sort_buffer"] = int(sort_buffer)
        self.cfg["frozen"] = bool(frozen)
        self.cfg["grad_clip_norm"] = float(grad_clip_norm)
        if frozen_steps < 0:
            raise BertflowError(Errors.E076.format(name=name, value=frozen_steps))
        self.cfg["frozen_steps"] = int(frozen_steps)
        self.cfg["trainable_layers"] = int(trainable_layers)
        self._trains: Optional[tuple] = None  # (transformer, trainable_layers) last applied
        # updates since nlp.initialize(): frozen_steps counts from there, so a loaded pipeline trained further
        # (no initialize) trains its encoder from the first update
        self._updates = int(frozen_steps)
        self._kept: Dict[tuple, tuple] = {}  # doc -> (TransformerData, windows) while frozen_steps lasts
        # nlp.update(examples, sgd=optimizer) calls finish_update on each component right after its own
        # update: for the encoder that is before the heads have backpropagated into it (see finish_update)
        self._awaiting_gradient = False
        self._deferred_sgd: Optional[Optimizer] = None
        self._steps_since_trim = 0
        self._owner_pid = os.getpid()
        # listening components that asked to know this encoder (bind_encoder), by name
        self._bound: Dict[str, object] = {}
        # the last update was frozen (or warming up): a head's gradient may have reached the transformer's
        # own weights (a decoder tied to the word embeddings), which finish_update drops instead of stepping
        self._stale_gradients = False
        install_extensions()

    def find_listeners(self, component) -> None:
        """Register the listeners in ``component`` (spacy-transformers), and
        hand this encoder to a listening component that has
        ``bind_encoder(encoder)``: a head that shares the encoder's weights (an
        MLM decoder tied to the word embeddings) or asks for corrupted input
        in training (``corrupt_inputs``, see ``training_inputs``)."""
        super().find_listeners(component)
        bind = getattr(component, "bind_encoder", None)
        if callable(bind) and getattr(component, "name", None) in self.listener_map:
            bind(self)
            self._bound[component.name] = component

    def training_inputs(self, examples: List[Example], docs: List[Doc]) -> Tuple[object, Dict[int, str]]:
        """The encoder's input for a training pass over ``docs``, and which of
        them a head corrupted (index -> component name).

        A listening head with ``corrupt_inputs(examples, tokenized) -> Dict[int,
        Tokenized]`` may replace the wordpieces of the docs it trains on (masked
        LM, replaced-token detection); ``tokenized`` holds each doc's clean
        wordpieces (``Tokenized``), and a replacement keeps their counts. Only
        those docs get corrupted rows: every other doc of the batch, which other
        heads train on, is encoded exactly as without that head. Inference
        (``pipe``, ``predict``) never corrupts."""
        corruptors = [c for name, c in self._bound.items()
                      if name in self.listener_map and callable(getattr(c, "corrupt_inputs", None))]
        if not corruptors:
            return docs, {}
        clean = self.model.tokenize(docs)
        given = list(clean)
        claimed: Dict[int, str] = {}
        for component in corruptors:
            for i, tok in component.corrupt_inputs(examples, list(clean)).items():
                if i in claimed:
                    raise BertflowError(Errors.E097.format(first=claimed[i], second=component.name,
                                                           start=docs[i].text[:40]))
                if len(tok.ids) != len(clean[i].ids) or len(tok) != len(clean[i]):
                    raise BertflowError(Errors.E098.format(name=component.name, index=i, got=len(tok),
                                                           expected=len(clean[i])))
                claimed[i] = component.name
                given[i] = tok
        return Pretokenized(docs, given), claimed  # tokenized once, for the pass as well

    def set_annotations(self, docs: Iterable[Doc], predictions: FullTransformerBatch) -> None:
        docs = list(docs)
        windows = getattr(predictions, "windows", None) or [None] * len(docs)
        set_doc_values(docs, TRF_DATA, predictions.doc_data)
        set_doc_values(docs, TRF_WINDOWS, windows)
        self.set_extra_annotations(docs, predictions)

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Encode a stream in length-sorted sub-batches, yielding docs in input order.

        Reads ``sort_buffer`` docs ahead (at least ``batch_size``), sorts them
        by wordpiece count and encodes sub-batches of at most ``batch_size`` docs
        and ``max_batch_items`` padded wordpieces, so short texts are not padded to
        the longest in the buffer. spaCy's error-handler convention holds: a
        sub-batch that fails goes to the handler, which raises (the default)
        or lets the pipe drop those docs and go on."""
        install_extensions()
        self._single_threaded_in_workers()
        error_handler = self.get_error_handler()
        buffer_size = max(batch_size, self.cfg.get("sort_buffer", 0))
        for buffer in minibatch(stream, buffer_size):
            buffer = list(buffer)
            failed = set()
            lengths, tokenized = self._tokenize_buffer(buffer)
            done = []  # (indices, docs, predictions) of each sub-batch that worked
            for indices in length_sorted_batches(lengths, batch_size, self.batch_items):
                subbatch = [buffer[i] for i in indices]
                try:
                    given = [tokenized[i] for i in indices]
                    done.append((indices, subbatch, self.model.predict(Pretokenized(subbatch, given) if any(given) else subbatch)))
                except Exception as err:  # noqa: BLE001  (handed to the error handler)
                    error_handler(self.name, self, subbatch, err)
                    failed.update(indices)
            try:
                # one store for the whole buffer: a head's batch (docs in input order, from any of the
                # sub-batches) then gathers its inputs with one index array. split_docs fills each
                # pass's doc_data with views into it, which set_annotations hands to the docs.
                split_docs([predictions for _, _, predictions in done])
                for _, subbatch, predictions in done:
                    self.set_annotations(subbatch, predictions)
            except Exception as err:  # noqa: BLE001
                error_handler(self.name, self, [doc for _, sub, _ in done for doc in sub], err)
                failed.update(i for indices, _, _ in done for i in indices)
            yield from (doc for i, doc in enumerate(buffer) if i not in failed)

    @property
    def batch_items(self) -> int:
        """Most padded wordpieces per sub-batch in ``pipe``: ``max_batch_items``,
        or when that is 0 the default for the device the encoder runs on."""
        configured = int(self.cfg.get("max_batch_items") or 0)
        if configured > 0:
            return configured
        model = self.model
        device = model.transformer.device.type if isinstance(model, EncoderModel) and model.attrs.get("has_transformer") \
            else "cpu"
        return AUTO_BATCH_ITEMS.get(device, AUTO_BATCH_ITEMS["cuda"])

    def _tokenize_buffer(self, docs: List[Doc]) -> Tuple[List[int], list]:
        """Tokenize ``docs`` once, for both the length sort and the passes:
        each doc's wordpiece count (with its ``text_pair``'s) and its
        tokenization, handed to the model with its batch. Sorting by wordpieces
        pads far less than by spaCy tokens. Before the weights are loaded, or for
        a doc whose pair the pass will reject, spaCy tokens stand in for the
        sort and the pass tokenizes (and reports) it itself."""
        model = self.model
        if not isinstance(model, EncoderModel) or not model.attrs.get("has_transformer"):
            return [len(doc) for doc in docs], [None] * len(docs)
        tokenized = model.tokenize(docs, strict=False)
        return [len(tok) if tok is not None else len(doc) for doc, tok in zip(docs, tokenized)], tokenized

    @property
    def transformer(self):
        """The Hugging Face model (torch ``nn.Module``) inside the encoder, e.g.
        for a head whose decoder is tied to its word embeddings."""
        return self.model.transformer

    @property
    def tokenizer(self):
        """The encoder's (fast) Hugging Face tokenizer."""
        return self.model.tokenizer

    def checkpoint_tensors(self, prefix: str) -> Dict[str, "torch.Tensor"]:
        """Tensors named ``prefix...`` in the pre-trained checkpoint this
        encoder was initialised from (``name`` resolved to a local directory)
        that the encoder itself does not load, e.g. BERT's pre-training heads
        (``cls.predictions.``); {} when it has none."""
        from bertflow.encoder.names import resolve_encoder
        from bertflow.encoder.serialization import checkpoint_tensors

        return checkpoint_tensors(resolve_encoder(self.model.attrs["name"]), prefix)

    def tokenize(self, docs: List[Doc]) -> list:
        """Each doc's clean wordpieces (``Tokenized``; None for a doc without tokens)."""
        return self.model.tokenize(docs)

    def outputs(self, docs: List[Doc], tokenized: Optional[list] = None) -> Tuple[List[TransformerData], List[dict]]:
        """Inference outputs for ``docs`` (as ``doc._.trf_data`` and
        ``doc._.trf_windows`` would hold them) without writing to the docs;
        ``tokenized`` gives each doc's wordpieces (e.g. corrupted ones, to score
        a masked-LM head), None tokenizes them."""
        batch = self.model.predict(Pretokenized(list(docs), list(tokenized)) if tokenized is not None else list(docs))
        windows = getattr(batch, "windows", None) or [None] * len(docs)
        return list(batch.doc_data), list(windows)

    def predict(self, docs: Iterable[Doc]) -> FullTransformerBatch:
        self._single_threaded_in_workers()
        return self.model.predict(list(docs))

    def _single_threaded_in_workers(self) -> None:
        """In a worker process of ``nlp.pipe(n_process=N)`` run torch on one thread:
        a forked child inherits torch's OpenMP pool in a broken state and hangs
        at its first parallel op, and N workers share the cores anyway. A worker
        is any process other than the one that built this component (forked, or
        spawned with a pickled copy); nothing changes in the user's own process."""
        if os.getpid() != self._owner_pid:
            import torch

            torch.set_num_threads(1)
            self._owner_pid = os.getpid()

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Run the encoder once and hand the outputs to every listener.

        Listeners before the last only accumulate their output gradients; the
        last one triggers a single backward pass through the encoder and the
        optimizer step. A doc a head leaves without gradient adds nothing.
        With ``frozen = true`` the forward runs without gradients and no step
        is taken.
        """
        validate_examples(examples, "EncoderComponent.update")
        # a previous batch whose heads never backpropagated has nothing to step
        self._awaiting_gradient, self._deferred_sgd = False, None
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        docs = [eg.predicted for eg in examples]
        if not any(len(doc) for doc in docs):
            return losses
        batch_id = TransformerListener.get_batch_id(docs)
        self._updates += 1
        warming_up = self._updates <= self.cfg.get("frozen_steps", 0)
        inputs, corrupted = self.training_inputs(list(examples), docs)
        frozen_now = bool(self.cfg.get("frozen") or warming_up)
        if self._stale_gradients and not frozen_now:  # a frozen batch's gradients that no finish_update dropped
            for param in self.model.transformer.parameters():
                param.grad = None
        self._stale_gradients = frozen_now
        if frozen_now:
            if warming_up and not corrupted:
                doc_data = self._kept_outputs(docs)
            else:  # corrupted input is drawn afresh every batch: never kept
                batch = self.model.predict(inputs)
                self.set_annotations(docs, batch)
                doc_data = batch.doc_data
            for listener in self.listeners:
                listener.receive(batch_id, doc_data, lambda d_datas: docs)
            return losses
        self._kept.clear()
        self._train_top_layers()
        set_dropout_rate(self.model, drop)
        batch, bp_batch = self.model.begin_update(inputs)
        for doc, win in zip(docs, batch.windows):  # heads that read positions (masked LM) need the layout
            doc._.trf_windows = win
        self._awaiting_gradient = bool(self.listeners)
        live = [i for i, data in enumerate(batch.doc_data) if "last_hidden_state" in data.model_output]
        d_docs: List[Optional[dict]] = [None] * len(docs)

        def accumulate(d_datas: List[TransformerData]) -> None:
            # spacy-transformers' pooling drops empty docs from the gradient list
            targets = range(len(docs)) if len(d_datas) == len(docs) else live
            for i, d_data in zip(targets, d_datas):
                for key, grad in d_data.model_output.items():
                    if isinstance(grad, (list, tuple)):
                        losses[self.name] += float(sum((g ** 2).sum() for g in grad))
                    else:
                        losses[self.name] += float((grad ** 2).sum())
                    current = d_docs[i] if d_docs[i] is not None else {}
                    if key in current:
                        prev = current[key]
                        current[key] = [p + g for p, g in zip(prev, grad)] if isinstance(grad, (list, tuple)) else prev + grad
                    else:
                        current[key] = list(grad) if isinstance(grad, (list, tuple)) else grad
                    d_docs[i] = current

        def backprop(d_datas: List[TransformerData]) -> List[Doc]:
            accumulate(d_datas)
            self._awaiting_gradient = False
            step_with = sgd if sgd is not None else self._deferred_sgd
            self._deferred_sgd = None
            if any(d is not None for d in d_docs):
                bp_batch(batch.gradients(d_docs))
                if step_with is not None:
                    self.finish_update(step_with)
            for i in range(len(d_docs)):
                d_docs[i] = None
            return docs

        for listener in self.listeners[:-1]:
            listener.receive(batch_id, batch.doc_data, accumulate)
        if self.listeners:
            self.listeners[-1].receive(batch_id, batch.doc_data, backprop)
        return losses

    def _train_top_layers(self) -> None:
        """Apply ``trainable_layers`` to the current transformer (once; again
        after the weights are replaced, e.g. by ``from_disk``)."""
        transformer, n = self.model.transformer, self.cfg.get("trainable_layers", 0)
        if self._trains is None or self._trains[0] is not transformer or self._trains[1] != n:
            train_top_layers(transformer, n)
            self._trains = (transformer, n)

    def _kept_outputs(self, docs: List[Doc]) -> List[TransformerData]:
        """The frozen encoder's outputs for ``docs``, each computed once while
        ``frozen_steps`` lasts (the weights do not change and no dropout runs,
        so a doc's outputs are the same every time). A doc is known by its
        text, its tokens and its pair input, all that the encoder reads."""
        keys = [(doc.text, tuple(t.idx for t in doc), doc._.text_pair) for doc in docs]
        todo = list({key: i for i, key in enumerate(keys) if key not in self._kept}.values())
        if todo:  # pipe: length-sorted sub-batches, so a SQuAD context does not pad the short sentences
            index = {id(docs[i]): i for i in todo}  # by identity: an error handler may drop a doc
            for doc in self.pipe([docs[i] for i in todo], batch_size=len(todo)):
                self._kept[keys[index[id(doc)]]] = (doc._.trf_data, doc._.trf_windows)
        for doc, key in zip(docs, keys):
            doc._.trf_data, doc._.trf_windows = self._kept[key]
        return [self._kept[key][0] for key in keys]

    def finish_update(self, sgd: Optimizer) -> None:
        """Clip the encoder's gradients to ``grad_clip_norm`` (global L2 norm),
        then take the optimizer step. spaCy's training loop calls this once per
        batch, after every component's update."""
        if self._awaiting_gradient:
            # nlp.update(sgd=...) calls this before the heads have backpropagated: step when the gradient
            # arrives, so the encoder learns from this batch now rather than one batch late
            self._deferred_sgd = sgd
            return
        if self._stale_gradients:
            # a frozen (or warming-up) batch: a head's gradient may still have reached the transformer's
            # weights through a tied decoder; the encoder does not step on it
            for param in self.model.transformer.parameters():
                param.grad = None
            return
        clip_encoder_gradients(self.model, self.cfg.get("grad_clip_norm", 0.0))
        self.model.finish_update(sgd)
        self._steps_since_trim += 1
        if self._steps_since_trim >= TRIM_EVERY:
            # without this a long CPU training run's memory grows until the OS kills it (see heap.py)
            release_freed_memory()
            self._steps_since_trim = 0

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "EncoderComponent":
        """Load the pipe from ``path``. The saved encoder is read as untrusted data
        (``serialization.SafeHFShim``): a damaged file or one that asks to run code
        is an error naming the file, and spacy-transformers' fallback that loads a
        model directory in place of the file is refused."""
        model_file = Path(path) / "model"
        if "model" not in exclude:
            if not model_file.is_file():
                raise BertflowError(Errors.E019.format(where=model_file, err="missing, or not a file"))
            for node in self.model.walk():
                for shim in node.shims:
                    shim.source = model_file
        # whatever architecture the config names, its Hugging Face shims read the file as untrusted data
        with guarded_hf_loading():
            return super().from_disk(path, exclude=exclude)

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None) -> None:
        """Load the pretrained weights and connect the listeners of later components."""
        install_extensions()
        if nlp is not None:
            check_schedule(nlp.config)
        self._updates, self._kept = 0, {}  # frozen_steps counts from here
        super().initialize(get_examples, nlp=nlp)


def check_schedule(config) -> None:
    """Warn when the learning-rate warm-up is longer than the training run: the
    rate would still be climbing (from 0) when training stops."""
    training = config.get("training", {}) if hasattr(config, "get") else {}
    schedule = training.get("optimizer", {}).get("learn_rate", {})
    max_steps = training.get("max_steps") or 0
    warmup = schedule.get("warmup_steps") if isinstance(schedule, dict) else None
    if isinstance(warmup, int) and isinstance(max_steps, int) and 0 < max_steps < warmup:
        warnings.warn(Errors.W005.format(warmup=warmup, max_steps=max_steps))
