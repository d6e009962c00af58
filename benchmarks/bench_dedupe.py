"""Near-duplicate grouping of 10,000 articles: MinHash signatures, then LSH grouping.

    .venv/bin/python -m benchmarks.bench_dedupe [--articles 10000] [--copies 0.1]

Articles are ~90 words of a heavy-tailed pseudo-vocabulary (two articles share about a
tenth of their words, like same-topic articles); a share of them (`--copies`) are reworded
copies of an earlier one (a fifth of the words replaced), which must join its story.
"""

from __future__ import annotations

import argparse
import os
import random
import time

from benchmarks.bench_collect import article_text, vocabulary
from kpdigest.config import load_config
from pipeline.dedupe import Grouper, Item, signature


def reword(rng: random.Random, text: str, vocab: list[str], share: float = 0.2) -> str:
    words = text.split()
    for i in rng.sample(range(len(words)), int(len(words) * share)):
        words[i] = rng.choice(vocab)
    return " ".join(words)


def run(n: int, copies: float) -> dict[str, float]:
    rng = random.Random(11)
    vocab = vocabulary(rng)
    texts: list[str] = []
    origin: list[int] = []
    for i in range(n):
        if texts and rng.random() < copies:
            src = rng.randrange(len(texts))
            texts.append(reword(rng, texts[src], vocab))
            origin.append(origin[src])
        else:
            texts.append(article_text(rng, vocab))
            origin.append(i)
    t0 = time.perf_counter()
    sigs = [signature(t) for t in texts]
    t1 = time.perf_counter()
    grouper = Grouper(load_config().collect.near_duplicate_threshold)
    stories = [grouper.add(Item(i, i, s, None), group=True) for i, s in enumerate(sigs)]
    t2 = time.perf_counter()
    found = sum(1 for i in range(n) if origin[i] != i and stories[i] == stories[origin[i]])
    wrong = sum(1 for i in range(n) if origin[i] == i and stories[i] != i)
    return {"signatures": t1 - t0, "grouping": t2 - t1, "copies": sum(o != i for i, o in enumerate(origin)),
            "found": found, "false": wrong, "stories": len(set(stories))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--copies", type=float, default=0.1)
    args = parser.parse_args([] if __name__ != "__main__" else None)
    r = run(args.articles, args.copies)
    print(f"near-duplicates, {args.articles} articles: signatures {r['signatures']:.2f} s, "
          f"grouping {r['grouping']:.2f} s; {r['found']}/{r['copies']} copies joined their story, "
          f"{r['false']} originals wrongly grouped, {r['stories']} stories; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
