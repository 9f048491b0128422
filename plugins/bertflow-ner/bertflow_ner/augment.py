"""Augmenters for NER training (``[corpora.train.augmenter]``): variants of a
training example whose entity mentions are changed, with the gold entities
moved along so they stay on the new text.

- ``bertflow_ner.mention_swap.v1``: a mention replaced by another mention of
  the same type seen earlier in the training stream;
- ``bertflow_ner.unseen_names.v1``: a mention replaced by a generated name:
  pseudo-words recombined from the letters of seen mentions of that type,
  with the original tokens' casing;
- ``bertflow_ner.mention_typos.v1``: character typos inside mentions (swap,
  drop, double or replace one letter);
- ``bertflow_ner.longer_mentions.v1``: a mention lengthened by a token of
  another mention of the same type;
- ``bertflow_ner.mention_mix.v1``: each changed mention gets one of the above,
  drawn by weight: one variant per example, however many kinds are on (a
  chain of augmenters would multiply the examples instead).

Each augmenter yields the original example with probability ``keep`` (1.0:
always) and a variant with probability ``prob``; within a variant each
mention changes with probability ``rate``. A variant and its kept original
share ``doc._.variant_group``: batched with ``bertflow.batch_by_group.v1``
(``group_attr = "variant_group"``), each step takes ``size`` originals and
their variants ride along, so the model sees as many clean examples per step
as without augmentation. They are deterministic for a
seed and compose with spaCy's own augmenters (``spacy.combined_augmenter.v1``
runs spaCy's, these can be chained with ``bertflow_ner.chain.v1``).
"""
import itertools
import random
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from bertflow.api import BertflowError

from .errors import Errors

Augmenter = Callable[[Language, Example], Iterator[Example]]
Change = Callable[[str, Tuple[str, ...]], Optional[Sequence[str]]]

VOWELS = "aeiou"
# doc._.variant_group: the same value on a variant's reference and on its original's (when the original
# is kept), so ``bertflow.batch_by_group.v1`` with ``group_attr = "variant_group"`` batches ``size``
# originals with their variants riding along: the same clean examples per step as without augmentation
VARIANT_GROUP = "variant_group"


class MentionPool:
    """Mentions seen so far, by label: a reservoir of at most ``size`` per
    label, filled from the training stream itself (no separate pass)."""

    def __init__(self, rng: random.Random, size: int = 5000):
        self.rng, self.size = rng, size
        self.by_label: Dict[str, List[Tuple[str, ...]]] = {}
        self.seen: Dict[str, int] = {}

    def add(self, label: str, words: Tuple[str, ...]) -> None:
        pool = self.by_label.setdefault(label, [])
        self.seen[label] = self.seen.get(label, 0) + 1
        if len(pool) < self.size:
            pool.append(words)
        else:
            slot = self.rng.randrange(self.seen[label])
            if slot < self.size:
                pool[slot] = words

    def draw(self, label: str, other_than: Tuple[str, ...]) -> Optional[Tuple[str, ...]]:
        """A random mention of ``label`` that differs from ``other_than`` (None: there is none).
        A few random picks first: the pool is large and a repeat is rare."""
        pool = self.by_label.get(label, ())
        for _ in range(min(len(pool), 4)):
            mention = self.rng.choice(pool)
            if mention != other_than:
                return mention
        choices = [m for m in pool if m != other_than]
        return self.rng.choice(choices) if choices else None

    def words(self, label: str, n_mentions: int = 16) -> List[str]:
        """The words of up to ``n_mentions`` random mentions of ``label``."""
        pool = self.by_label.get(label, ())
        return [w for m in self.rng.sample(pool, min(len(pool), n_mentions)) for w in m]


def _check(prob: float, rate: float, keep: float) -> None:
    for name, value in (("prob", prob), ("rate", rate), ("keep", keep)):
        if not 0.0 <= value <= 1.0:
            raise BertflowError(Errors.NER013.format(name=name, value=value))


def rebuild(nlp: Language, example: Example, change: Change) -> Example:
    """The example with each gold mention's words replaced by ``change(label,
    words)`` (None: kept), the gold entities moved onto the new words. The
    reference's other tokens, their spacing and the entities' labels stay."""
    ref = example.reference
    words: List[str] = []
    spaces: List[bool] = []
    new_ents: List[str] = []
    by_start = {ent.start: ent for ent in ref.ents}
    i = 0
    while i < len(ref):
        ent = by_start.get(i)
        if ent is None:
            words.append(ref[i].text)
            spaces.append(bool(ref[i].whitespace_))
            new_ents.append("O")
            i += 1
            continue
        old = tuple(t.text for t in ent)
        new = change(ent.label_, old)
        new = list(old) if not new else [w for w in new if w]
        inner = [bool(t.whitespace_) for t in ent[:-1]] if len(new) == len(old) else [True] * (len(new) - 1)
        for k, word in enumerate(new):
            words.append(word)
            spaces.append(inner[k] if k < len(new) - 1 else bool(ent[-1].whitespace_))
            new_ents.append(("B-" if k == 0 else "I-") + ent.label_)
        i = ent.end
    doc = Doc(nlp.vocab, words=words, spaces=spaces, ents=new_ents)
    return Example(nlp.make_doc(doc.text), doc)


def _shape_like(template: str, word: str) -> str:
    """``word`` with ``template``'s casing: ALL CAPS, Capitalised or lower."""
    if template.isupper() and len(template) > 1:
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:].lower()
    return word.lower()


def pseudo_word(rng: random.Random, sources: Sequence[str], template: str) -> str:
    """A new word from pieces of ``sources`` (the letters of seen mentions of
    the label): a prefix of one and a suffix of another, cut at a vowel so it
    reads as a name, cased like ``template``."""
    letters = [s for s in sources if s.isalpha() and len(s) >= 3] or ["Varen", "Tolik", "Mesra"]
    a, b = rng.choice(letters), rng.choice(letters)
    cut_a = next((k + 1 for k in range(1, len(a) - 1) if a[k].lower() in VOWELS), len(a) // 2 or 1)
    cut_b = next((k for k in range(len(b) - 2, 0, -1) if b[k].lower() in VOWELS), len(b) // 2)
    word = a[:cut_a] + b[cut_b:]
    if not template.isalpha():  # digits, dots, hyphens: keep the token, it is shape, not name
        return template
    return _shape_like(template, word)


def takes_typo(word: str) -> bool:
    """A word of at least 3 characters with a letter in it (shorter ones are kept)."""
    return len(word) >= 3 and any(c.isalpha() for c in word)


def typo(rng: random.Random, word: str) -> str:
    """One character typo inside ``word``, which always changes it (a word
    that does not ``takes_typo`` is kept)."""
    if not takes_typo(word):
        return word
    k = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0 and word[k] != word[k + 1]:  # swap with the next letter (equal letters: a drop instead)
        return word[:k] + word[k + 1] + word[k] + word[k + 2:]
    if kind == 0:
        kind = 1
    if kind == 1:  # drop
        return word[:k] + word[k + 1:]
    if kind == 2:  # double
        return word[:k] + word[k] + word[k:]
    letter = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != word[k].lower()])
    return word[:k] + (letter.upper() if word[k].isupper() else letter) + word[k + 1:]


def _augmenter(name: str, prob: float, rate: float, keep: float, seed: int,
               make_change: Callable[[random.Random, MentionPool], Change]) -> Augmenter:
    _check(prob, rate, keep)
    if not Doc.has_extension(VARIANT_GROUP):
        Doc.set_extension(VARIANT_GROUP, default=None)
    rng = random.Random(seed)
    pool = MentionPool(rng)
    change = make_change(rng, pool)

    groups = itertools.count()

    def augment(nlp: Language, example: Example) -> Iterator[Example]:
        mentions = [(ent.label_, tuple(t.text for t in ent)) for ent in example.reference.ents]
        kept = rng.random() < keep or not mentions
        variant = None
        if mentions and rng.random() < prob:
            changed = [False]

            def maybe(label: str, words: Tuple[str, ...]) -> Optional[Sequence[str]]:
                if rng.random() >= rate:
                    return None
                new = change(label, words)
                changed[0] = changed[0] or (new is not None and tuple(new) != words)
                return new

            variant = rebuild(nlp, example, maybe)
            if not changed[0]:
                variant = None
        for label, words in mentions:  # after the draw: a mention is never swapped with itself
            pool.add(label, words)
        # tagged before either is yielded (a batcher may read the tag at once); an original without a
        # variant this time is untagged, whatever an earlier pass over the same doc left on it
        group = None if variant is None else (name, seed, next(groups))
        if variant is not None:
            variant.reference._.set(VARIANT_GROUP, group)
        if kept:
            example.reference._.set(VARIANT_GROUP, group)
            yield example
        if variant is not None:
            yield variant

    augment.__name__ = name
    return augment


# what each augmenter does to one mention: (rng, pool) -> change(label, words) -> new words, or None to keep
# it; ``bertflow stress`` applies the same changes to every mention of a dev set


def swap_change(rng: random.Random, pool: MentionPool) -> Change:
    """Another mention of the same type."""
    return lambda label, words: pool.draw(label, words)


def unseen_change(rng: random.Random, pool: MentionPool) -> Change:
    """Generated pseudo-words, one per original token."""
    def change(label: str, words: Tuple[str, ...]) -> List[str]:
        sources = pool.words(label) or list(words)
        return [pseudo_word(rng, sources, w) for w in words]
    return change


def typo_change(rng: random.Random, pool: MentionPool) -> Change:
    """One typo in one token that can take one (None: the mention has none)."""
    def change(label: str, words: Tuple[str, ...]) -> Optional[List[str]]:
        candidates = [i for i, w in enumerate(words) if takes_typo(w)]
        if not candidates:
            return None
        k = rng.choice(candidates)
        return [typo(rng, w) if i == k else w for i, w in enumerate(words)]
    return change


def longer_change(rng: random.Random, pool: MentionPool) -> Change:
    """One more token: a token of another mention of its type, put after it."""
    def change(label: str, words: Tuple[str, ...]) -> Optional[List[str]]:
        other = pool.draw(label, words)
        return None if other is None else [*words, rng.choice(other)]
    return change


@registry.augmenters("bertflow_ner.mention_swap.v1")
def mention_swap(prob: float = 0.5, rate: float = 0.5, keep: float = 1.0, seed: int = 0) -> Augmenter:
    """A mention replaced by another mention of the same type seen earlier."""
    return _augmenter("mention_swap", prob, rate, keep, seed, swap_change)


@registry.augmenters("bertflow_ner.unseen_names.v1")
def unseen_names(prob: float = 0.5, rate: float = 0.5, keep: float = 1.0, seed: int = 0) -> Augmenter:
    """A mention replaced by generated pseudo-words, one per original token."""
    return _augmenter("unseen_names", prob, rate, keep, seed, unseen_change)


@registry.augmenters("bertflow_ner.mention_typos.v1")
def mention_typos(prob: float = 0.5, rate: float = 0.5, keep: float = 1.0, seed: int = 0) -> Augmenter:
    """One typo in one token of a mention."""
    return _augmenter("mention_typos", prob, rate, keep, seed, typo_change)


@registry.augmenters("bertflow_ner.longer_mentions.v1")
def longer_mentions(prob: float = 0.5, rate: float = 0.5, keep: float = 1.0, seed: int = 0) -> Augmenter:
    """A mention with one more token: a token of another mention of its type,
    put after it (a second name, a second word of an organisation)."""
    return _augmenter("longer_mentions", prob, rate, keep, seed, longer_change)


def mixed_change(weights: Dict[str, float]) -> Callable[[random.Random, MentionPool], Change]:
    """A change maker that applies, to each mention, one of the named changes
    drawn with the given weights (0: never)."""
    makers = {"swap": swap_change, "unseen": unseen_change, "typos": typo_change, "longer": longer_change}
    bad = [f"{name}={w}" for name, w in weights.items() if w < 0] + [n for n in weights if n not in makers]
    if bad or not any(weights.values()):
        raise BertflowError(Errors.NER018.format(weights=", ".join(bad) or "all 0"))

    def make(rng: random.Random, pool: MentionPool) -> Change:
        names = [n for n, w in weights.items() if w > 0]
        changes = [makers[n](rng, pool) for n in names]
        cum = [sum(weights[n] for n in names[: k + 1]) for k in range(len(names))]
        return lambda label, words: changes[_pick(rng, cum)](label, words)
    return make


def _pick(rng: random.Random, cumulative: List[float]) -> int:
    x = rng.random() * cumulative[-1]
    return next(k for k, c in enumerate(cumulative) if x < c)


@registry.augmenters("bertflow_ner.mention_mix.v1")
def mention_mix(prob: float = 0.5, rate: float = 0.5, keep: float = 1.0, seed: int = 0, swap: float = 1.0,
                unseen: float = 1.0, typos: float = 1.0, longer: float = 0.0) -> Augmenter:
    """One variant per example whose changed mentions each get a swap, an
    unseen name, a typo or one more token, drawn by the weights."""
    weights = {"swap": swap, "unseen": unseen, "typos": typos, "longer": longer}
    return _augmenter("mention_mix", prob, rate, keep, seed, mixed_change(weights))


@registry.augmenters("bertflow_ner.chain.v1")
def chain(first: Augmenter, second: Augmenter) -> Augmenter:
    """Every example ``first`` yields, through ``second`` (e.g. spaCy's
    ``spacy.lower_case.v1`` after a mention swap)."""
    def augment(nlp: Language, example: Example) -> Iterator[Example]:
        for eg in first(nlp, example):
            yield from second(nlp, eg)
    return augment
