"""Write the multitask project's shipped samples (assets/) from the full datasets.

    python scripts/make_samples.py ../../../shared/data assets

A fixed-seed draw from each train split and from each dev split, so the demo
trains on a few thousand examples and scores on dev examples it never saw:
SST-2 and STS-B rows, CoNLL-2003 sentences, and SQuAD questions whose context
is at most ``--max-context-words`` words (SQuAD paragraphs are cut by nothing:
short paragraphs are chosen whole, so a 2-core CPU trains on a few hundred
wordpieces per question instead of a full window).
"""
import argparse
import json
import random
from pathlib import Path

SIZES = {  # (train, dev)
    "sst2": (3000, 872),
    "conll": (6000, 800),
    "squad": (1700, 400),
    "stsb": (1500, 750),
}


def draw_tsv(src: Path, dest: Path, n: int, rng: random.Random) -> int:
    header, *rows = src.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = rows if n >= len(rows) else rng.sample(rows, n)
    dest.write_text(header + "".join(rows), encoding="utf-8")
    return len(rows)


def draw_conll(src: Path, dest: Path, n: int, rng: random.Random) -> int:
    sentences = [s for s in src.read_text(encoding="utf-8").split("\n\n") if s.strip()]
    chosen = sentences if n >= len(sentences) else rng.sample(sentences, n)
    dest.write_text("\n\n".join(s.strip("\n") for s in chosen) + "\n", encoding="utf-8")
    return len(chosen)


def draw_squad(src: Path, dest: Path, n: int, rng: random.Random, max_words: int) -> int:
    data = json.loads(src.read_text(encoding="utf-8"))
    paragraphs = [(article["title"], p) for article in data["data"] for p in article["paragraphs"]
                  if len(p["context"].split()) <= max_words]
    rng.shuffle(paragraphs)
    chosen, count = {}, 0
    for title, paragraph in paragraphs:
        if count >= n:
            break
        qas = paragraph["qas"][: n - count]
        chosen.setdefault(title, []).append({"context": paragraph["context"], "qas": qas})
        count += len(qas)
    out = {"version": data.get("version", "1.1"),
           "data": [{"title": title, "paragraphs": ps} for title, ps in chosen.items()]}
    dest.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="folder with sst2/, conll2003/, squad/, stsb/ (../shared/data)")
    parser.add_argument("out_dir", type=Path, help="where the eight sample files go (the project's assets/)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws")
    parser.add_argument("--max-context-words", type=int, default=100, help="longest SQuAD context chosen, in words")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    data, out = args.data_dir, args.out_dir
    for split in ("train", "dev"):
        i = 0 if split == "train" else 1
        rng = random.Random(f"{args.seed}-{split}")
        counts = {
            "sst2": draw_tsv(data / "sst2" / f"{split}.tsv", out / f"sst2_{split}.tsv", SIZES["sst2"][i], rng),
            "conll": draw_conll(data / "conll2003" / f"{split}.txt", out / f"conll_{split}.txt", SIZES["conll"][i],
                                rng),
            "squad": draw_squad(data / "squad" / f"{split}.json", out / f"squad_{split}.json", SIZES["squad"][i], rng,
                            args.max_context_words),
            "stsb": draw_tsv(data / "stsb" / f"{split}.tsv", out / f"stsb_{split}.tsv", SIZES["stsb"][i], rng),
        }
        print(split, counts)


if __name__ == "__main__":
    main()
