"""Heads listen to one encoder forward pass, in training and at inference."""
import numpy
import pytest
import torch
from spacy.training import Example
from thinc.api import Adam

from bertflow.errors import BertflowError

TEXTS = ["the cat sat on the mat", "John loves Paris", "Mary ran to London", "the dog was bad"]


def count_forwards(nlp):
    calls = []
    # the embeddings run once per encoder forward, padded or packed
    transformer = nlp.get_pipe("encoder").model.transformer
    transformer.embeddings.register_forward_hook(lambda *args: calls.append(1))
    return calls


def examples_for(nlp, annotate=True):
    egs = []
    for i, text in enumerate(TEXTS):
        ref = nlp.make_doc(text)
        if annotate or i % 2 == 0:
            ref.user_data["probe"] = i % 2
        egs.append(Example(nlp.make_doc(text), ref))
    return egs


def test_two_heads_one_forward_per_batch(make_nlp):
    nlp = make_nlp(heads=("test_doc_probe", "test_token_probe"))
    egs = examples_for(nlp)
    nlp.initialize(lambda: egs)
    encoder = nlp.get_pipe("encoder")
    assert sorted(encoder.listening_components) == ["test_doc_probe", "test_token_probe"]
    calls = count_forwards(nlp)
    optimizer = Adam(1e-3)
    for step in range(3):
        nlp.update(egs, sgd=optimizer)
        assert len(calls) == step + 1  # one encoder forward per update batch
    calls.clear()
    docs = list(nlp.pipe(TEXTS, batch_size=64))
    assert len(calls) == 1
    assert all("probe_pred" in d.user_data and len(d.user_data["title_pred"]) == len(d) for d in docs)


def test_training_through_the_listeners_learns(make_nlp):
    nlp = make_nlp(heads=("test_doc_probe", "test_token_probe"))
    egs = examples_for(nlp)
    nlp.initialize(lambda: egs)
    optimizer = Adam(3e-3)
    before = nlp.get_pipe("encoder").model.transformer.embeddings.word_embeddings.weight.detach().clone()
    first = last = None
    for step in range(40):
        losses = nlp.update(egs, sgd=optimizer)
        first = first or dict(losses)
        last = losses
    assert last["test_doc_probe"] < first["test_doc_probe"] * 0.5
    assert last["test_token_probe"] < first["test_token_probe"] * 0.5
    after = nlp.get_pipe("encoder").model.transformer.embeddings.word_embeddings.weight
    assert not numpy.allclose(before.numpy(), after.detach().numpy())  # fine-tuned
    preds = [d.user_data["probe_pred"] for d in nlp.pipe(TEXTS)]
    assert preds == [i % 2 for i in range(len(TEXTS))]


def test_missing_annotation_gives_no_gradient(make_nlp):
    nlp = make_nlp(heads=("test_doc_probe",))
    egs = examples_for(nlp, annotate=False)  # only even docs carry the probe label
    nlp.initialize(lambda: egs)
    head = nlp.get_pipe("test_doc_probe")
    docs = [eg.predicted for eg in egs]
    nlp.get_pipe("encoder").set_annotations(docs, nlp.get_pipe("encoder").predict(docs))
    scores = head.model.predict(docs)
    loss, d_scores = head.get_loss(egs, scores)
    assert numpy.all(d_scores[1::2] == 0) and numpy.any(d_scores[0::2] != 0)
    # and the loss is the same as on the annotated examples alone
    loss_annotated, _ = head.get_loss(egs[0::2], scores[0::2])
    assert loss == pytest.approx(loss_annotated)


def test_frozen_encoder_keeps_weights_heads_learn(make_nlp):
    # mean pooling: a random tiny BERT's frozen [CLS] vectors barely differ between docs
    nlp = make_nlp(heads=("test_doc_probe",), head_configs={"test_doc_probe": {"pooling": "mean"}})
    nlp.get_pipe("encoder").cfg["frozen"] = True
    egs = examples_for(nlp)
    nlp.initialize(lambda: egs)
    calls = count_forwards(nlp)
    weights = {k: v.clone() for k, v in nlp.get_pipe("encoder").model.transformer.state_dict().items()}
    optimizer = Adam(1e-2)
    losses = [nlp.update(egs, sgd=optimizer)["test_doc_probe"] for _ in range(15)]
    assert len(calls) == 15
    assert losses[-1] < losses[0] * 0.5
    for k, v in nlp.get_pipe("encoder").model.transformer.state_dict().items():
        assert (v == weights[k]).all(), k


def test_grad_factor_zero_freezes_encoder_for_that_head(make_nlp):
    nlp = make_nlp(heads=("test_doc_probe",), head_configs={"test_doc_probe": {"grad_factor": 0.0}})
    egs = examples_for(nlp)
    nlp.initialize(lambda: egs)
    emb = nlp.get_pipe("encoder").model.transformer.embeddings.word_embeddings.weight
    before = emb.detach().clone()
    optimizer = Adam(1e-2)
    for _ in range(3):
        nlp.update(egs, sgd=optimizer)
    assert numpy.allclose(before.numpy(), emb.detach().numpy())


@pytest.mark.parametrize("layers,pooling", [("mix", "cls"), ("concat", "mean"), ("last", "max"), ("mix", "mean"),
                                            ("last", "pooler")])
def test_layer_choice_heads_train(make_nlp, layers, pooling):
    nlp = make_nlp(keep_layers=3, heads=("test_doc_probe", "test_token_probe"), head_configs={
        "test_doc_probe": {"layers": layers, "n_layers": 3, "pooling": pooling},
        "test_token_probe": {"layers": layers, "n_layers": 2},
    })
    egs = examples_for(nlp)
    nlp.initialize(lambda: egs)
    optimizer = Adam(3e-3)
    losses = [nlp.update(egs, sgd=optimizer) for _ in range(40)]
    # the token probe has a clear signal; the doc probe's [CLS]/pooler on a random
    # tiny BERT moves slowly, so only require that its loss falls
    assert max(step["test_token_probe"] for step in losses[-5:]) < losses[0]["test_token_probe"] * 0.9
    assert min(step["test_doc_probe"] for step in losses[1:]) < losses[0]["test_doc_probe"]
    if layers == "mix":
        mixer = [n for n in nlp.get_pipe("test_doc_probe").model.walk() if n.name == "select_layers(mix)"][0]
        assert not numpy.allclose(mixer.get_param("weights"), 0)  # the mix weights learned


def test_layer_choice_needs_kept_layers(make_nlp):
    nlp = make_nlp(keep_layers=1, heads=("test_doc_probe",), head_configs={"test_doc_probe": {"layers": "mix", "n_layers": 4}})
    nlp.initialize(lambda: examples_for(nlp))
    with pytest.raises(BertflowError, match="Set keep_layers = 4"):
        nlp("the cat sat")


def test_encoder_gradients_clipped_to_global_norm(make_nlp, monkeypatch):
    nlp = make_nlp(heads=("test_doc_probe",))
    nlp.get_pipe("encoder").cfg["grad_clip_norm"] = 1e-3
    egs = examples_for(nlp)
    nlp.initialize(lambda: egs)
    norms = []
    encoder = nlp.get_pipe("encoder")
    real_finish = encoder.model.finish_update

    def spy(sgd):
        grads = [p.grad for p in encoder.model.transformer.parameters() if p.grad is not None and p.grad.any()]
        if grads:  # spaCy calls finish_update again after the step, with nothing left
            norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
        return real_finish(sgd)

    monkeypatch.setattr(encoder.model, "finish_update", spy)
    head, optimizer = nlp.get_pipe("test_doc_probe"), Adam(1e-3)
    for _ in range(2):
        encoder.update(egs)
        head.update(egs, sgd=optimizer)  # gradients reach the encoder (heads start at N(0, 0.02²), not 0)
        encoder.finish_update(optimizer)
    assert len(norms) == 2 and all(0 < n <= 1e-3 * 1.001 for n in norms)


def test_nlp_update_with_an_optimizer_steps_the_encoder_on_this_batch(make_nlp):
    """nlp.update(egs, sgd=opt) finishes each component right after its own update, before the heads
    backpropagate into the encoder; the encoder's step waits for that gradient, so one call equals
    spaCy's training loop (update everything, then finish_update everything)."""
    from spacy.util import fix_random_seed

    from bertflow.training.optimizer import make_adamw

    weights = []
    for one_call in (True, False):
        fix_random_seed(0)
        nlp = make_nlp(heads=("test_doc_probe", "test_token_probe"))
        egs = examples_for(nlp)
        nlp.initialize(lambda: egs)
        transformer = nlp.get_pipe("encoder").model.transformer
        before = transformer.embeddings.word_embeddings.weight.detach().clone()
        optimizer = make_adamw(1e-3)
        for _ in range(2):
            if one_call:
                nlp.update(egs, sgd=optimizer, drop=0.0)
            else:
                nlp.update(egs, sgd=False, drop=0.0)
                for _, proc in nlp.pipeline:
                    proc.finish_update(optimizer)
        after = transformer.embeddings.word_embeddings.weight.detach().clone()
        assert not torch.equal(before, after)
        weights.append([p.detach().clone() for p in transformer.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_training_returns_the_freed_heap_every_few_steps(make_nlp, monkeypatch):
    """Long CPU training runs grew past 23 GB of resident memory (glibc kept the freed activations of
    varying shapes); the encoder hands the freed heap back to the OS every TRIM_EVERY optimizer steps."""
    import sys

    import bertflow.encoder.component as component
    from bertflow.encoder.heap import release_freed_memory
    from bertflow.training.optimizer import make_adamw

    if sys.platform.startswith("linux"):
        assert release_freed_memory() is True  # glibc is there to ask
    trims = []
    monkeypatch.setattr(component, "TRIM_EVERY", 2)
    monkeypatch.setattr(component, "release_freed_memory", lambda: trims.append(1) or True)
    nlp = make_nlp(heads=("test_doc_probe",))
    egs = examples_for(nlp)
    nlp.initialize(lambda: egs)
    optimizer = make_adamw(1e-3)
    for _ in range(5):
        nlp.update(egs, sgd=optimizer, drop=0.0)
    assert len(trims) == 2


def test_frozen_steps_warm_the_heads_up_on_kept_outputs_then_the_encoder_trains(make_nlp):
    """For its first frozen_steps updates the encoder keeps its weights and runs
    once per distinct doc (later epochs reuse the kept outputs, which equal a
    fresh pass); then it trains, and the kept outputs are dropped."""
    nlp = make_nlp(heads=("test_doc_probe", "test_token_probe"), head_configs={"test_doc_probe": {"pooling": "mean"}})
    encoder = nlp.get_pipe("encoder")
    encoder.cfg["frozen_steps"] = 3
    egs = examples_for(nlp)
    nlp.initialize(lambda: egs)
    calls = count_forwards(nlp)
    transformer = encoder.model.transformer
    weights = {k: v.clone() for k, v in transformer.state_dict().items()}
    probe = nlp.get_pipe("test_doc_probe").model
    optimizer = Adam(1e-2)
    head_params = lambda: numpy.concatenate([node.get_param(n).ravel() for node in probe.walk()  # noqa: E731
                                             for n in node.param_names if node.has_param(n)])
    head_before = head_params()
    for step in range(3):
        nlp.update(egs, sgd=optimizer)
        assert all((v == weights[k]).all() for k, v in transformer.state_dict().items()), step
    assert len(calls) == 1  # four docs of similar length: one pass, at the first step only
    assert len(encoder._kept) == len(TEXTS)
    doc = nlp.make_doc(TEXTS[0])
    kept = encoder._kept[(doc.text, tuple(t.idx for t in doc), None)][0].model_output["last_hidden_state"]
    fresh = encoder.predict([doc]).doc_data[0].model_output["last_hidden_state"]
    numpy.testing.assert_allclose(kept, fresh, atol=1e-6)
    assert not numpy.array_equal(head_before, head_params())  # the heads learned meanwhile
    nlp.update(egs, sgd=optimizer)  # step 4: the encoder trains
    assert len(calls) == 3 and encoder._kept == {}  # + the fresh pass above
    assert any(not (v == weights[k]).all() for k, v in transformer.state_dict().items())


def test_frozen_steps_must_not_be_negative(make_nlp):
    nlp = make_nlp()
    with pytest.raises(BertflowError, match="frozen_steps = -1 is negative"):
        nlp.add_pipe("bertflow_encoder", name="other", config={"frozen_steps": -1})


def test_the_learning_rate_is_constant_while_frozen_then_warms_up_and_decays():
    from itertools import islice

    from bertflow.training.optimizer import frozen_then_warmup_linear
    rates = list(islice(frozen_then_warmup_linear(1.0, warmup_steps=2, total_steps=10, frozen_steps=4), 12))
    assert rates == [1.0, 1.0, 1.0, 1.0, 0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    with pytest.raises(BertflowError, match="frozen_steps = 11 must be between 0 and total_steps = 10"):
        next(frozen_then_warmup_linear(1.0, warmup_steps=2, total_steps=10, frozen_steps=11))


def test_kept_layers_below_the_trainable_ones_train(make_nlp):
    """keep_layers reaching below trainable_layers (the multitask project's NER
    concatenates the last 4 layers while 3 train): the frozen layer's output
    has no graph, so its gradient is dropped instead of failing the backward
    pass; the trainable layer and the heads still learn, nothing below moves."""
    nlp = make_nlp(keep_layers=3, heads=("test_doc_probe", "test_token_probe"), head_configs={
        "test_doc_probe": {"layers": "concat", "n_layers": 3, "pooling": "mean"},
        "test_token_probe": {"layers": "concat", "n_layers": 3},
    })
    encoder = nlp.get_pipe("encoder")
    egs = examples_for(nlp)
    nlp.initialize(lambda: egs)
    transformer = encoder.model.transformer
    top = f"encoder.layer.{transformer.config.num_hidden_layers - 1}."
    encoder.cfg["trainable_layers"] = 1
    before = {k: v.clone() for k, v in transformer.state_dict().items()}
    optimizer = Adam(3e-3)
    losses = [nlp.update(egs, sgd=optimizer) for _ in range(20)]
    changed = {k for k, v in transformer.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(top) or k.startswith("pooler.") for k in changed), sorted(changed)[:5]
    assert losses[-1]["test_token_probe"] < losses[0]["test_token_probe"]


def test_trainable_layers_trains_only_the_top_layers(make_nlp):
    nlp = make_nlp(heads=("test_doc_probe",), head_configs={"test_doc_probe": {"pooling": "mean"}})
    encoder = nlp.get_pipe("encoder")
    egs = examples_for(nlp)
    nlp.initialize(lambda: egs)
    transformer = encoder.model.transformer
    n_layers = transformer.config.num_hidden_layers
    encoder.cfg["trainable_layers"] = 1
    before = {k: v.clone() for k, v in transformer.state_dict().items()}
    nlp.update(egs, sgd=Adam(1e-3))
    top = f"encoder.layer.{n_layers - 1}."
    changed = {k for k, v in transformer.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(top) or k.startswith("pooler.") for k in changed), sorted(changed)[:5]
    assert not any(k.startswith("embeddings.") for k in changed)
    encoder.cfg["trainable_layers"] = 0  # every layer again
    before = {k: v.clone() for k, v in transformer.state_dict().items()}
    nlp.update(egs, sgd=Adam(1e-3))
    assert not torch.equal(transformer.state_dict()["embeddings.word_embeddings.weight"],
                           before["embeddings.word_embeddings.weight"])
    encoder.cfg["trainable_layers"] = n_layers + 3
    with pytest.raises(BertflowError, match=f"trainable_layers = {n_layers + 3}: the encoder has {n_layers} layers"):
        nlp.update(egs, sgd=Adam(1e-3))
