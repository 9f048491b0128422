"""Word-replacement augmentation for distillation: more text for the teacher
to label than the data holds.

A teacher trained for epochs on a labeled set has learnt that set's labels,
so distilling on the same texts teaches the student little that the labels
would not. Variants of those texts with some words swapped for near
neighbours are new inputs the teacher labels for free (TinyBERT's data
augmentation). TinyBERT draws the neighbours from a masked-LM head or GloVe;
here they come from the teacher encoder's own input-embedding matrix, which
every BERT-style model has (a fine-tuned encoder often has no masked-LM head):
for a word that is one vocabulary entry, the ``k`` whole-word entries nearest
to it by cosine. Words of several wordpieces, numbers and punctuation stay as
they are, and so does the tokenization: a variant has the same tokens and
spaces as its source, with each eligible word replaced with probability
``prob`` and the original's casing put back on the replacement.

Whole words are found as WordPiece vocabularies (BERT and its kin) mark
them: entries without the ``##`` continuation prefix. A byte-level BPE
vocabulary (RoBERTa's ``Ġword``) has none that qualify, so its variants come
out unchanged.

Variants carry no gold annotation (a swapped word can change the label), so
they are for teacher targets only.
"""
import random
from typing import Dict, List, Optional

from bertflow.errors import BertflowError, Errors


class WordReplacer:
    """Make variants of spaCy docs by swapping words for embedding neighbours.

    tokenizer: the encoder's Hugging Face tokenizer (its vocabulary decides
        which words are one wordpiece).
    embeddings: the encoder's input-embedding matrix (vocabulary size x width).
    prob: chance that each eligible word is replaced.
    k: neighbours to draw from, nearest first.
    """

    def __init__(self, tokenizer, embeddings, *, prob: float = 0.4, k: int = 15, seed: int = 0):
        import torch

        if not 0 < prob <= 1 or k < 1:
            raise BertflowError(Errors.E123.format(prob=prob, k=k))
        self.prob, self.k = prob, k
        self._rng = random.Random(seed)
        self._vocab: Dict[str, int] = dict(tokenizer.get_vocab())
        self._tokens = {i: t for t, i in self._vocab.items()}
        # an uncased tokenizer looks words up lowercased; a cased one as they are
        self._uncased = tokenizer.tokenize("Abc") == tokenizer.tokenize("abc")
        matrix = embeddings.detach().float()
        self._unit = matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)
        # whole-word entries (no "##" continuation, no punctuation or digits); an ASCII word draws only
        # ASCII neighbours, so an English sentence does not get a stray CJK or accented entry
        size = self._unit.shape[0]
        self._whole = torch.zeros(size, dtype=torch.bool)
        self._ascii = torch.zeros(size, dtype=torch.bool)
        for token, i in self._vocab.items():
            if i < size and token.isalpha():
                self._whole[i] = True
                self._ascii[i] = token.isascii()
        self._cache: Dict[str, List[str]] = {}

    @classmethod
    def from_encoder(cls, encoder_pipe, **kwargs) -> "WordReplacer":
        """The replacer for a ``bertflow_encoder`` component's own vocabulary and embeddings."""
        model = encoder_pipe.model
        return cls(model.tokenizer, model.transformer.get_input_embeddings().weight, **kwargs)

    def candidates(self, word: str) -> List[str]:
        """The ``k`` whole-word vocabulary entries nearest to ``word`` (lowercase
        for an uncased vocabulary), nearest first; [] for a word that is not one
        vocabulary entry."""
        key = word.lower() if self._uncased else word
        if key not in self._cache:
            i = self._vocab.get(key)
            if i is None or i >= self._unit.shape[0] or not self._whole[i]:
                self._cache[key] = []
            else:
                allowed = self._ascii if key.isascii() else self._whole
                scores = self._unit @ self._unit[i]
                scores[~allowed] = float("-inf")
                scores[i] = float("-inf")
                n = min(self.k, int(allowed.sum()) - 1)
                self._cache[key] = [self._tokens[j] for j in scores.topk(n).indices.tolist()] if n > 0 else []
        return self._cache[key]

    def variant(self, doc, rng: Optional[random.Random] = None):
        """A new ``Doc`` with ``doc``'s tokens, spaces and user data, each
        eligible word replaced with probability ``prob``."""
        from spacy.tokens import Doc

        rng = rng or self._rng
        words = []
        for token in doc:
            word = token.text
            if token.is_alpha and rng.random() < self.prob:
                options = self.candidates(word)
                if options:
                    word = _same_case(rng.choice(options), token.text)
            words.append(word)
        new = Doc(doc.vocab, words=words, spaces=[bool(t.whitespace_) for t in doc])
        new.user_data.update(doc.user_data)  # e.g. doc._.text_pair: a QA question, a second sentence
        return new

    def __call__(self, example, n: int) -> list:
        """``n`` variants of ``example`` (a spaCy ``Example``) as examples
        without gold annotation."""
        from spacy.training import Example

        out = []
        for _ in range(n):
            doc = self.variant(example.predicted)
            out.append(Example(doc, doc.copy()))
        return out


def _same_case(word: str, like: str) -> str:
    if len(like) > 1 and like.isupper():
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word
