"""``bertflow stress ner DEV.spacy OUTDIR``: variants of a user's own NER dev
set, each a ``.spacy`` file with correct gold, for ``bertflow evaluate`` to
score: how the pipeline holds up on entities it has not seen.

- ``clean``: the dev set as given;
- ``unseen``: every mention replaced by generated pseudo-words (pieces of the
  set's own names of that type, the original casing);
- ``cross_type``: every mention replaced by a mention of *another* type from
  the set, keeping its own label (the same string as a person here and an
  organisation there);
- ``typos``: one character typo in every mention;
- ``longer``: every mention gains a token of another mention of its type;
- ``lower``: the whole text lower-cased.
"""
import random
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import spacy
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.training.augment import make_lowercase_variant

from bertflow.api import BertflowError

from .augment import MentionPool, longer_change, rebuild, typo_change, unseen_change
from .errors import Errors

VARIANTS = ("clean", "unseen", "cross_type", "typos", "longer", "lower")


def stress_variants(docs: List[Doc], seed: int = 0) -> Dict[str, List[Doc]]:
    """Each variant's reference docs, one per input doc, in input order."""
    nlp = spacy.blank(docs[0].lang_ if docs else "en")
    rng = random.Random(seed)
    pool = MentionPool(rng, size=10 ** 6)
    for doc in docs:
        for ent in doc.ents:
            pool.add(ent.label_, tuple(t.text for t in ent))
    other_types = {label: [m for other, ms in pool.by_label.items() if other != label for m in ms]
                   for label in pool.by_label}

    def cross(label: str, words: Tuple[str, ...]) -> Optional[List[str]]:
        choices = other_types.get(label) or []
        return list(rng.choice(choices)) if choices else None

    changes = {"unseen": unseen_change(rng, pool), "cross_type": cross, "typos": typo_change(rng, pool),
               "longer": longer_change(rng, pool)}
    out: Dict[str, List[Doc]] = {name: [] for name in VARIANTS}
    for doc in docs:
        example = Example(nlp.make_doc(doc.text), doc)
        out["clean"].append(doc)
        for name, change in changes.items():
            out[name].append(rebuild(nlp, example, change).reference)
        out["lower"].append(make_lowercase_variant(nlp, example).reference)
    return out


def write_stress_sets(dev: Union[str, Path], out_dir: Union[str, Path], *, seed: int = 0,
                      force: bool = False) -> Dict[str, Dict[str, int]]:
    """Write ``OUT_DIR/<variant>.spacy`` for every variant; returns the docs
    and entities in each. Refuses an OUT_DIR that holds any of those files
    without ``force`` (then only those files are replaced)."""
    dev, out_dir = Path(dev), Path(out_dir)
    if not dev.is_file():
        raise BertflowError(Errors.NER014.format(path=dev))
    try:
        docs = list(DocBin().from_disk(dev).get_docs(spacy.blank("en").vocab))
    except Exception as err:  # noqa: BLE001  (not a DocBin: say which file)
        raise BertflowError(Errors.NER015.format(path=dev, err=err)) from None
    if not any(doc.ents for doc in docs):
        raise BertflowError(Errors.NER016.format(path=dev))
    targets = {name: out_dir / f"{name}.spacy" for name in VARIANTS}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not force:
        raise BertflowError(Errors.NER017.format(paths=", ".join(existing)))
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, variant in stress_variants(docs, seed).items():
        DocBin(docs=variant, store_user_data=True).to_disk(targets[name])
        summary[name] = {"docs": len(variant), "entities": sum(len(d.ents) for d in variant)}
    return summary


def score_stress_sets(model: Union[str, Path], out_dir: Union[str, Path], *, batch_size: Optional[int] = None
                      ) -> Dict[str, Dict[str, float]]:
    """Entity P/R/F of ``model`` on each variant in ``out_dir`` (spaCy's
    ``nlp.evaluate``, as ``bertflow evaluate`` scores), written to
    ``out_dir/scores.json`` too. The pipeline is loaded with ``spacy.load``,
    which reads a bertflow encoder through bertflow's safe loader."""
    import srsly
    from spacy.training import Corpus

    nlp = spacy.load(model)
    scores: Dict[str, Dict[str, float]] = {}
    for name in VARIANTS:
        path = Path(out_dir) / f"{name}.spacy"
        examples = list(Corpus(path)(nlp))  # read as spacy evaluate reads a dev set
        result = nlp.evaluate(examples, batch_size=batch_size)
        scores[name] = {key: float(result.get(key) or 0.0) for key in ("ents_p", "ents_r", "ents_f")}
    srsly.write_json(Path(out_dir) / "scores.json", scores)
    return scores


def stress_table(scores: Dict[str, Dict[str, float]]) -> str:
    """The variants' entity F1 and its change from the clean set, as a Markdown table."""
    clean = scores["clean"]["ents_f"]
    lines = ["| variant | ents_f | vs clean (points) |", "|---|---|---|"]
    for name, values in scores.items():
        delta = "" if name == "clean" else f"{100 * (values['ents_f'] - clean):+.2f}"
        lines.append(f"| {name} | {values['ents_f']:.4f} | {delta} |")
    return "\n".join(lines)


def add_command(app) -> None:
    """``bertflow stress ner DEV OUT_DIR`` (the ``bertflow_cli`` hook)."""
    import typer

    from bertflow.api import run_or_fail

    stress = typer.Typer(help="Write variants of a dev set that stress a head (bertflow evaluate scores each).")

    @stress.command("ner")
    def stress_ner(
        dev: Path = typer.Argument(..., help="The NER dev set (.spacy) to vary."),
        out_dir: Path = typer.Argument(..., help="Folder for the variants (<variant>.spacy)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the generated names, swaps and typos."),
        force: bool = typer.Option(False, "--force", help="Replace variant files already in OUT_DIR."),
        model: Optional[str] = typer.Option(None, "--model", "-m",
                                            help="A trained NER pipeline: score it on every variant and print the table."),
    ) -> None:
        """Unseen names, cross-type swaps, typos, longer mentions and lower case, with correct gold."""
        summary = run_or_fail(write_stress_sets, dev, out_dir, seed=seed, force=force)
        for name, counts in summary.items():
            typer.echo(f"{out_dir / (name + '.spacy')}: {counts['docs']} docs, {counts['entities']} entities")
        if model is None:
            typer.echo(f"Score them: bertflow stress ner {dev} {out_dir} --force --model MODEL")
            return
        scores = run_or_fail(score_stress_sets, model, out_dir)
        typer.echo(stress_table(scores))

    app.add_typer(stress, name="stress")
