"""Two minimal heads built only from bertflow's public building blocks, used by
the core tests to drive the encoder the way task plugins do. Not task code:
a "probe" predicts a doc label from user_data, another one per-token flags."""
import numpy
from spacy.language import Language
from thinc.api import chain, with_array, Softmax

from bertflow.heads import HeadPipe, annotation_mask, softmax_cross_entropy

class DocProbe(HeadPipe):
    """Predicts ``doc.user_data['probe']`` (0/1); docs without it give no loss."""

    def set_annotations(self, docs, scores):
        for doc, row in zip(docs, scores):
            doc.user_data["probe_pred"] = int(row.argmax())

    def get_loss(self, examples, scores):
        truths = numpy.zeros(scores.shape, dtype="f")
        for i, eg in enumerate(examples):
            if "probe" in eg.reference.user_data:
                truths[i, eg.reference.user_data["probe"]] = 1.0
        mask = annotation_mask(examples, lambda doc: "probe" in doc.user_data)
        return softmax_cross_entropy(scores, truths, mask)

    def initialize(self, get_examples, *, nlp=None):
        self.model.initialize(X=self.sample_docs(get_examples, nlp))

    def score(self, examples, **kwargs):
        gold = [(eg.reference.user_data.get("probe"), eg.predicted.user_data.get("probe_pred")) for eg in examples]
        gold = [(g, p) for g, p in gold if g is not None]
        return {"probe_acc": sum(g == p for g, p in gold) / len(gold) if gold else None}


@Language.factory("test_doc_probe", default_config={"pooling": "cls", "layers": "last", "n_layers": 4, "grad_factor": 1.0},
                  default_score_weights={"probe_acc": 1.0})
def make_doc_probe(nlp, name, pooling: str, layers: str, n_layers: int, grad_factor: float):
    from bertflow.heads import Classifier, DocPooler

    model = chain(DocPooler(pooling, grad_factor, layers, n_layers), Classifier(nO=2, dropout=0.0))
    return DocProbe(nlp.vocab, model, name)


class TokenProbe(DocProbe):
    """Predicts ``token.is_title`` per token from the per-token listener output:
    every doc is annotated (its own text is the label)."""

    def set_annotations(self, docs, scores):
        for doc, rows in zip(docs, scores):
            doc.user_data["title_pred"] = [int(r.argmax()) for r in rows]

    def get_loss(self, examples, scores):
        loss, grads = 0.0, []
        for eg, rows in zip(examples, scores):
            truths = numpy.zeros(rows.shape, dtype="f")
            for tok in eg.reference:
                truths[tok.i, int(tok.is_title)] = 1.0
            l, d = softmax_cross_entropy(rows, truths)
            loss += l
            grads.append(d / len(examples))
        return loss, grads


@Language.factory("test_token_probe", default_config={"layers": "last", "n_layers": 4})
def make_token_probe(nlp, name, layers: str, n_layers: int):
    from bertflow.heads import EncoderListener

    model = chain(EncoderListener(layers=layers, n_layers=n_layers), with_array(Softmax(2)))
    return TokenProbe(nlp.vocab, model, name)
