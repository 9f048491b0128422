"""`make demo`: the shared encoder on the default model (minilm-l6), as a user meets it.

Runs texts through one `bertflow_encoder` forward pass and prints, per text,
how it was tokenised and windowed, including a text pair and a document far
longer than one window. Task heads (installed plugins) are listed too.
"""
import time

import numpy
import spacy

import bertflow  # noqa: F401  (registers the factories)
from bertflow.plugins import get_tasks

TEXTS = [
    "Apple was founded by Steve Jobs in Cupertino.",
    "Jobs started Apple with Steve Wozniak in 1976.",
    "The weather in Paris was lovely this spring.",
    "東京は日本の首都です。🙂👩‍👩‍👧",
]


def doc_vector(doc) -> numpy.ndarray:
    data = doc._.trf_data
    flat = data.model_output["last_hidden_state"].reshape(-1, data.width)
    return flat[numpy.unique(data.align.dataXd)].mean(axis=0)


def main() -> None:
    start = time.time()
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder")
    nlp.initialize()
    print(f"Loaded the shared encoder (minilm-l6) in {time.time() - start:.1f}s.")
    tasks = get_tasks()
    print(f"Installed task heads: {', '.join(sorted(tasks)) or 'none yet'}\n")

    docs = list(nlp.pipe(TEXTS))
    for doc in docs:
        w = doc._.trf_windows
        print(f"{doc.text!r}\n  {len(doc)} tokens -> {w['n_wordpieces']} wordpieces, {w['n_windows']} window(s)")
    vectors = numpy.stack([doc_vector(d) for d in docs])
    vectors /= numpy.linalg.norm(vectors, axis=1, keepdims=True)
    sims = vectors @ vectors.T
    print("\nCosine of mean-pooled vectors (untrained pooling; the similarity head is a plugin):")
    for i, doc in enumerate(docs):
        print("  " + "  ".join(f"{sims[i, j]:5.2f}" for j in range(len(docs))) + f"   {doc.text[:40]}")

    question = nlp.make_doc("Who founded Apple?")
    context = nlp.make_doc(TEXTS[0])
    context._.text_pair = question.text
    context = nlp(context)
    wp = context._.trf_data.wordpieces
    print(f"\nText pair: {' '.join(wp.strings[0])}")
    print(f"  segment ids: {''.join(str(t) for t in wp.token_type_ids[0][: wp.lengths[0]])}")

    long_text = " ".join(TEXTS[:3] * 120)
    long_doc = nlp(long_text)
    w = long_doc._.trf_windows
    print(f"\nLong doc: {len(long_doc)} tokens, {w['n_wordpieces']} wordpieces -> {w['n_windows']} windows of "
          f"{w['window']} (stride {w['stride']}); truncated: {w['truncated']}")
    print(f"\nDone in {time.time() - start:.1f}s.")


if __name__ == "__main__":
    main()
