#!/usr/bin/env python3
"""Scores a large text corpus (one utterance per line) with Ray Data, one emoarc Estimator per worker, and
writes the intensities as Parquet (a `text` column, an `intensities` tensor column, `emoarc_error`).

    python3 examples/python/ray_score.py corpus.txt --out scored/ --workers 2

Locally this starts Ray on this machine; with `--address auto` (or RAY_ADDRESS) it joins a running cluster and
the same code spreads the workers over its nodes, each of which needs the emoarc wheel installed.
"""

import argparse
import time

import ray

from emoarc.ray_data import score_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="text file, one utterance per line (or a folder of them)")
    parser.add_argument("--out", required=True, help="output folder for Parquet files")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers, each holding one estimator")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--backend", default="auto", help="auto, f32, int16, ... (pin it across machines)")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: a local instance)")
    args = parser.parse_args()

    ray.init(address=args.address)
    start = time.perf_counter()
    ds = score_dataset(ray.data.read_text(args.input), concurrency=args.workers, batch_size=args.batch_size,
                       backend=args.backend)
    ds.write_parquet(args.out)
    print(f"scored in {time.perf_counter() - start:.1f}s -> {args.out}")


if __name__ == "__main__":
    main()
