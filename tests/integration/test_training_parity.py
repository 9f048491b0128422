"""A bertflow training step is a Hugging Face training step: the textcat project's
config (encoder + bertflow_textcat, bertflow.AdamW.v1) against
AutoModelForSequenceClassification + torch.optim.AdamW, same weights and batches,
dropout off, stepped the way `spacy train` steps. The losses agree step after step."""
from pathlib import Path

import numpy
import pytest
import torch
from spacy.training import Example
from spacy.util import fix_random_seed, load_config, load_model_from_config

from bertflow.testing.fixtures import torch_adamw

CONFIG = Path(__file__).resolve().parents[2] / "projects" / "textcat" / "configs" / "textcat.cfg"
LABELS = ["NEGATIVE", "POSITIVE"]
TEXTS = ["a gorgeous , witty film", "dull and lifeless", "one of the year 's best", "it never takes off",
         "a charming journey", "the plot is a mess", "moving and funny", "i was bored stiff"]


def _no_dropout(module: torch.nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if hasattr(m, "dropout_prob"):  # attention dropout inside the sdpa kernel
            m.dropout_prob = 0.0


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_training_steps_match_hugging_face(tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    fix_random_seed(0)
    # fp32 against fp32: the shipped config's mixed_precision would train in bf16 on a CPU that has it
    config = load_config(CONFIG, overrides={"paths.encoder": str(tiny_bert_dir),
                                            "components.encoder.model.mixed_precision": False})
    config["training"]["optimizer"]["learn_rate"] = 1e-3
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    rows = [(t, LABELS[i % 2]) for i, t in enumerate(TEXTS)]

    def examples(batch):
        return [Example.from_dict(nlp.make_doc(t), {"cats": {k: float(k == y) for k in LABELS}}) for t, y in batch]

    nlp.initialize(lambda: examples(rows))
    encoder = nlp.get_pipe("encoder").model.transformer
    hf = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    assert all(torch.equal(v, hf.bert.state_dict()[k]) for k, v in encoder.state_dict().items())
    output = nlp.get_pipe("textcat").model.get_ref("output_layer")
    output.set_param("W", hf.classifier.weight.detach().numpy().copy())
    output.set_param("b", hf.classifier.bias.detach().numpy().copy())
    _no_dropout(encoder)
    _no_dropout(hf)

    from spacy.util import registry

    optimizer = registry.resolve({"o": config["training"]["optimizer"]})["o"]
    hf_optimizer = torch_adamw(hf.parameters(), lr=1e-3, weight_decay=0.01)
    hf.train()
    ours, theirs = [], []
    for step in range(6):
        batch = rows[(step % 2) * 4: (step % 2) * 4 + 4]
        losses = {}
        nlp.update(examples(batch), sgd=False, drop=0.0, losses=losses)  # as spacy train steps
        for _, proc in nlp.pipeline:
            proc.finish_update(optimizer)
        enc = tokenizer([t for t, _ in batch], padding=True, return_tensors="pt")
        loss = hf(**enc, labels=torch.tensor([LABELS.index(y) for _, y in batch])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.bert.parameters(), 1.0)  # the encoder's global clip
        hf_optimizer.step()
        hf_optimizer.zero_grad()
        ours.append(losses["textcat"])
        theirs.append(loss.item())
    assert ours[-1] < ours[0]  # it learns
    numpy.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
