"""`make demo`: the shared encoder on the default model (minilm-l6), as a user meets it.

Runs texts through one `bertflow_encoder` forward pass and prints, per text,
how it was tokenised and windowed, including a text pair and a document far
longer than one window. Task heads (installed plugins) are listed, and with
bertflow-similarity installed the texts are compared zero-shot
(doc.similarity) and searched (bertflow.search).
"""
import time

import spacy

import bertflow  # noqa: F401  (registers the factories)
from bertflow.plugins import get_tasks

TEXTS = [
    "Apple was founded by Steve Jobs in Cupertino.",
    "Jobs started Apple with Steve Wozniak in 1976.",
    "The weather in Paris was lovely this spring.",
    "東京は日本の首都です。🙂👩‍👩‍👧",
]


def main() -> None:
    start = time.time()
    tasks = get_tasks()
    nlp = spacy.blank("en")
    nlp.add_pipe("bertflow_encoder")
    if "similarity" in tasks:  # zero-shot sentence embeddings: minilm-l6 is a sentence-transformers model
        nlp.add_pipe(tasks["similarity"].factory)
    nlp.initialize()
    print(f"Loaded the shared encoder (minilm-l6) in {time.time() - start:.1f}s.")
    print(f"Installed task heads: {', '.join(sorted(tasks)) or 'none yet'}\n")

    docs = list(nlp.pipe(TEXTS))
    for doc in docs:
        w = doc._.trf_windows
        print(f"{doc.text!r}\n  {len(doc)} tokens -> {w['n_wordpieces']} wordpieces, {w['n_windows']} window(s)")
    if "similarity" in tasks:
        print("\ndoc.similarity (zero-shot bi-encoder, cosine):")
        for doc in docs:
            print("  " + "  ".join(f"{doc.similarity(other):5.2f}" for other in docs) + f"   {doc.text[:40]}")
        hits = bertflow.search(nlp, ["Who started Apple?"], TEXTS, top_k=2)[0]
        print("bertflow.search('Who started Apple?'): " + "; ".join(f"{h['score']:.2f} {h['text'][:40]!r}" for h in hits))

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
