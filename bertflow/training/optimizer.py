"""``bertflow.AdamW.v1``: AdamW as PyTorch and Hugging Face fine-tune BERT with it.

thinc's ``Adam.v1`` differs from ``torch.optim.AdamW`` in two ways:

- it adds ``eps`` to the *uncorrected* ``sqrt(v)`` and folds the bias
  correction into the step size, so early on the effective epsilon is
  ``eps / sqrt(1 - beta2**t)``, many times ``eps`` in the first steps;
  BERT's per-element gradients are small, so early updates come out shorter
  than PyTorch's on the same gradient;
- its weight decay applies to every parameter, where BERT's recipe leaves
  biases and LayerNorm weights alone.

End to end the difference is small. What this optimizer buys is exactness: with it a bertflow training
step *is* a torch/HF step (``tests/integration/test_training_parity.py``), so any gap to a
Hugging Face baseline comes from elsewhere (seed, batches), not the update.

It follows ``torch.optim.AdamW``: bias-corrected moments with ``eps`` outside
the corrected root, decoupled weight decay only on parameters with two or more
dimensions (weight matrices and embeddings; the biases and LayerNorm weights
of BERT and the thinc heads are 1-d). The update runs as in-place torch ops on
the arrays thinc hands it (no copies, CPU or GPU); thinc's per-parameter
``grad_clip``, learning-rate schedules and parameter averages are kept, so it
drops into any spaCy config.
"""
import math
from typing import Tuple

import torch
from spacy.util import registry
from thinc.api import Optimizer, constant_then, warmup_linear
from thinc.backends import get_array_ops as _ops_for
from thinc.types import FloatsXd

from bertflow.errors import BertflowError, Errors


class AdamW(Optimizer):
    """thinc Optimizer with torch.optim.AdamW's update rule (see the module docstring)."""

    def __call__(self, key: Tuple[int, str], weights: FloatsXd, gradient: FloatsXd, *, lr_scale: float = 1.0):
        if len(gradient) < 1:
            return weights, gradient
        self.nr_update[key] += 1
        step = self.nr_update[key]
        if self.grad_clip:
            gradient = _ops_for(gradient).clip_gradient(gradient, self.grad_clip)  # per parameter, as thinc
        w, g = torch.as_tensor(weights), torch.as_tensor(gradient)
        if key not in self.mom1:
            self.mom1[key] = torch.zeros_like(w)
            self.mom2[key] = torch.zeros_like(w)
        m, v = self.mom1[key], self.mom2[key]
        lr = lr_scale * self.learn_rate
        if self.L2 and w.dim() > 1:  # decoupled decay, matrices and embeddings only
            w.mul_(1.0 - lr * self.L2)
        m.mul_(self.b1).add_(g, alpha=1.0 - self.b1)
        v.mul_(self.b2).addcmul_(g, g, value=1.0 - self.b2)
        denom = (v.sqrt() / math.sqrt(1.0 - self.b2 ** step)).add_(self.eps)
        w.addcdiv_(m, denom, value=-lr / (1.0 - self.b1 ** step))
        g.zero_()
        if self.averages is not None:
            ops = _ops_for(weights)
            if key not in self.averages:
                self.averages[key] = ops.alloc(weights.shape, dtype="float32")
            ops.update_averages(self.averages[key], weights, step)
        return weights, gradient


@registry.optimizers("bertflow.AdamW.v1")
def make_adamw(
    learn_rate=5e-5,
    *,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    use_averages: bool = False,
) -> Optimizer:
    """AdamW with PyTorch's update rule (BERT's fine-tuning optimizer).

    learn_rate (float or schedule): e.g. ``warmup_linear.v1``.
    beta1, beta2, eps (float): as in ``torch.optim.AdamW``.
    weight_decay (float): decoupled decay on parameters with 2+ dimensions only.
    grad_clip (float): per-parameter L2 clip, as thinc's Adam (0 = off); the
        encoder also clips its gradients by global norm (``grad_clip_norm``).
    use_averages (bool): keep parameter averages, as thinc's Adam can.
    """
    for name, value in (("beta1", beta1), ("beta2", beta2)):
        if not 0.0 <= value < 1.0:
            raise BertflowError(Errors.E062.format(name=name, value=value))
    if eps <= 0 or weight_decay < 0 or grad_clip < 0:
        raise BertflowError(Errors.E061.format(eps=eps, weight_decay=weight_decay, grad_clip=grad_clip))
    return AdamW(learn_rate, L2=weight_decay, beta1=beta1, beta2=beta2, eps=eps, grad_clip=grad_clip,
                 use_averages=use_averages, L2_is_weight_decay=True)


@registry.schedules("bertflow.frozen_then_warmup_linear.v1")
def frozen_then_warmup_linear(initial_rate: float, warmup_steps: int, total_steps: int, frozen_steps: int = 0):
    """``warmup_linear.v1`` that starts after the encoder's ``frozen_steps``.

    For the first ``frozen_steps`` steps the rate is ``initial_rate`` (only the
    heads train then, at ``initial_rate * learn_rate_scale``); then it climbs
    from 0 over ``warmup_steps`` and falls linearly to 0 at ``total_steps``
    (counted from the start, frozen steps included), as BERT fine-tuning does.
    Give it the same number as the encoder's ``frozen_steps``.
    """
    if not 0 <= frozen_steps <= total_steps:
        raise BertflowError(Errors.E077.format(frozen_steps=frozen_steps, total_steps=total_steps))
    yield from constant_then(initial_rate, frozen_steps,
                             warmup_linear(initial_rate, warmup_steps, total_steps - frozen_steps))
