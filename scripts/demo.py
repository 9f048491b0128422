"""`make demo`: the main job on the embedded default model (minilm-l6).

Trains the multitask pipeline of projects/multitask — one shared encoder,
four heads (textcat, ner, qa, similarity) — on the small samples shipped in
the repo, with `spacy project run` as a user would, saves it, then runs it on
new texts and prints, per text, the category, the entities, the answer to a
question and a similarity. The samples are tiny (160 sentences per task), so
the heads are only a few minutes old: the point is the workflow; the projects
train on the full datasets for real accuracy (benchmarks/BENCHMARKS.md).
"""
import subprocess
import sys
import time
from pathlib import Path

import spacy

import bertflow

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "projects" / "multitask"
STEPS = 100

NEW_TEXTS = [
    ("Steve Jobs and Steve Wozniak founded Apple in Cupertino, California, in 1976.", "Where was Apple founded?"),
    ("A gorgeous, funny and deeply moving film; the best thing Pixar has made in years.", "What made the film?"),
    ("The talks in Brussels between the European Union and Britain collapsed on Friday.", "Where were the talks?"),
    ("Dull, overlong and badly acted, the movie never finds a reason to exist.", "How was the movie acted?"),
]
REFERENCE = "A company was started by two friends."


def run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "spacy", "project", "run", *args], cwd=PROJECT, check=True)


def main() -> None:
    start = time.time()
    print(f"Training projects/multitask on the shipped samples ({STEPS} steps, CPU)...\n", flush=True)
    run("convert")
    run("train", ".", f"--vars.max_steps={STEPS}", f"--vars.warmup_steps={STEPS // 10}", "--vars.lr=0.0001")
    trained = time.time() - start
    model_dir = PROJECT / "training" / "multitask" / "model-best"
    nlp = spacy.load(model_dir)
    print(f"\nTrained and saved {model_dir.relative_to(ROOT)} in {trained / 60:.1f} min "
          f"(pipeline: {', '.join(nlp.pipe_names)}).\n")
    reference = nlp(REFERENCE)
    for text, question in NEW_TEXTS:
        doc = nlp(text)
        label, prob = max(doc.cats.items(), key=lambda kv: kv[1])
        ents = ", ".join(f"{e.text} [{e.label_}]" for e in doc.ents) or "none"
        answer = bertflow.ask(nlp, question, doc)
        said = f"{answer[0].text!r} (p={answer[0].score:.2f})" if answer else "no answer"
        print(text)
        print(f"  category:   {label} ({prob:.2f})")
        print(f"  entities:   {ents}")
        print(f"  Q: {question}  A: {said}")
        print(f"  similarity to {REFERENCE!r}: {doc.similarity(reference):.2f}\n")
    print(f"Done in {(time.time() - start) / 60:.1f} min. Load it yourself: spacy.load({str(model_dir.relative_to(ROOT))!r})")


if __name__ == "__main__":
    main()
