#!/usr/bin/env python3
"""In-process Python scoring (`emoarc.Estimator.score`) against `emoarc score` on the same corpus and backend:
utterances per second of each, best of `--passes` runs, and their ratio. Both include tokenization; the CLI
figure includes its start-up and model load (as a user running it sees), so a pass loads the model once in
Python too and the load time is reported apart.

    python3 benches/python_score.py CORPUS.txt [--bin target/release/emoarc] [--precision auto] [--passes 3]

The peer corpus (2,000 chat utterances) is written by /work/shared/peers/make_corpus.py.
"""

import argparse
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

    cli_best = float("inf")
    for _ in range(args.passes):
        start = time.perf_counter()
        subprocess.run([args.bin, "score", args.corpus, "--precision", args.precision, "-o", "/dev/null"],
                       check=True, stderr=subprocess.DEVNULL)
        cli_best = min(cli_best, time.perf_counter() - start)

    start = time.perf_counter()
    estimator = emoarc.Estimator(backend=args.precision)
    load = time.perf_counter() - start
    py_best = float("inf")
    for _ in range(args.passes):
        start = time.perf_counter()
        estimator.score(texts)
        py_best = min(py_best, time.perf_counter() - start)

    cli_rate, py_rate, py_with_load = len(texts) / cli_best, len(texts) / py_best, len(texts) / (py_best + load)
    print(f"backend: {estimator.backend}, {len(texts)} utterances, best of {args.passes}")
    print(f"emoarc score (process, model load included): {cli_rate:.1f} utt/s")
    print(f"Python Estimator.score (model loaded once, {load:.2f}s): {py_rate:.1f} utt/s "
          f"({py_with_load:.1f} utt/s counting the load)")
    print(f"ratio Python / CLI: {py_rate / cli_rate:.2f} ({py_with_load / cli_rate:.2f} counting the load)")


if __name__ == "__main__":
    main()
