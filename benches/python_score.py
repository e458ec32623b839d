#!/usr/bin/env python3
"""In-process Python scoring (`emoarc.Estimator.score`) against `emoarc score` on the same corpus and backend:
utterances per second of each, best of `--passes` alternating runs, and their ratio. Both include
tokenization; the CLI is compared by its own scoring rate (its summary line) and by its whole process (start-up
and model load included); Python loads the model once and reports that time apart.

    python3 benches/python_score.py CORPUS.txt [--bin target/release/emoarc] [--precision auto] [--passes 3]

The peer corpus (2,000 chat utterances) is written by /work/shared/peers/make_corpus.py.
"""

import argparse
import re
import subprocess
import time

import emoarc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("--bin", default="target/release/emoarc")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    with open(args.corpus, encoding="utf-8") as f:
        texts = [line for line in f.read().splitlines() if line.strip()]

    start = time.perf_counter()
    estimator = emoarc.Estimator(backend=args.precision)
    load = time.perf_counter() - start
    # Passes alternate between the two, so a change in the machine's load hits both alike.
    cli_best = cli_scoring = py_best = 0.0
    for _ in range(args.passes):
        start = time.perf_counter()
        out = subprocess.run([args.bin, "score", args.corpus, "--precision", args.precision, "-o", "/dev/null"],
                             check=True, capture_output=True, text=True)
        cli_best = max(cli_best, len(texts) / (time.perf_counter() - start))
        # The CLI's own summary: its scoring rate without process start and model load.
        m = re.search(r"\(([\d.]+) utterances/s\)", out.stderr)
        cli_scoring = max(cli_scoring, float(m.group(1)) if m else 0.0)
        start = time.perf_counter()
        estimator.score(texts)
        py_best = max(py_best, len(texts) / (time.perf_counter() - start))

    print(f"backend: {estimator.backend}, {len(texts)} utterances, best of {args.passes} alternating passes")
    print(f"emoarc score: {cli_scoring:.1f} utt/s scoring ({cli_best:.1f} utt/s for the whole process)")
    print(f"Python Estimator.score: {py_best:.1f} utt/s (model load {load:.2f}s, once per process)")
    print(f"ratio Python / CLI scoring: {py_best / cli_scoring:.2f}; Python / CLI process: {py_best / cli_best:.2f}")


if __name__ == "__main__":
    main()
