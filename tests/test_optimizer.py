"""bertflow.AdamW.v1 follows torch.optim.AdamW step for step (thinc's Adam.v1 does not)."""
import numpy
import pytest
import torch
from thinc.api import Adam, Config
from spacy.util import registry

from bertflow.errors import BertflowError
from bertflow.training.optimizer import make_adamw
from bertflow.testing.fixtures import torch_adamw


def _run(optimizer_factory, steps=6, lr=1e-3, wd=0.01):
    rng = numpy.random.default_rng(0)
    shapes = {"W": (8, 4), "b": (4,)}
    ours = {k: rng.normal(size=s).astype("f") for k, s in shapes.items()}
    ref = [torch.tensor(v.copy(), requires_grad=True) for v in ours.values()]
    opt_ref = torch_adamw(ref, lr, wd)
    opt = optimizer_factory(lr, wd)
    for _ in range(steps):
        # BERT-sized gradients (1e-7..1e-5 per element) are where eps placement matters
        grads = {k: (rng.normal(size=s) * 10.0 ** rng.uniform(-7, -5, size=s)).astype("f") for k, s in shapes.items()}
        for (k, w), p in zip(ours.items(), ref):
            ours[k], _ = opt((1, k), w, grads[k].copy())
            p.grad = torch.tensor(grads[k])
        opt_ref.step()
        opt.step_schedules()
    return [(ours[k], p.detach().numpy()) for k, p in zip(shapes, ref)]


def test_adamw_matches_torch_adamw_with_decoupled_decay_on_matrices_only():
    for ours, ref in _run(lambda lr, wd: make_adamw(lr, weight_decay=wd, grad_clip=0.0)):
        numpy.testing.assert_allclose(ours, ref, rtol=0, atol=2e-7)


def test_thincs_adam_parts_from_torch_on_small_gradients():
    """Why bertflow ships its own: thinc's eps sits inside the bias correction."""
    pairs = _run(lambda lr, wd: Adam(lr, L2=wd, L2_is_weight_decay=True, grad_clip=0.0, use_averages=False))
    assert max(float(numpy.abs(ours - ref).max()) for ours, ref in pairs) > 1e-5


def test_adamw_from_config_with_a_schedule():
    config = Config().from_str("""
[optimizer]
@optimizers = "bertflow.AdamW.v1"
weight_decay = 0.0

[optimizer.learn_rate]
@schedules = "warmup_linear.v1"
warmup_steps = 2
total_steps = 10
initial_rate = 0.1
""")
    opt = registry.resolve(config)["optimizer"]
    w = numpy.ones((2, 2), dtype="f")
    w, _ = opt((0, "W"), w, numpy.ones((2, 2), dtype="f"))
    assert numpy.allclose(w, 1.0)  # warm-up step 0: lr 0
    opt.step_schedules()
    w, _ = opt((0, "W"), w, numpy.ones((2, 2), dtype="f"))
    assert numpy.all(w < 1.0)


@pytest.mark.parametrize("kwargs", [{"beta1": 1.0}, {"eps": 0.0}, {"weight_decay": -1.0}])
def test_adamw_bad_settings(kwargs):
    with pytest.raises(BertflowError, match="bertflow.AdamW.v1"):
        make_adamw(1e-3, **kwargs)
