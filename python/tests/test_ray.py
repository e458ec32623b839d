"""Ray Data batch scoring on a local Ray instance (2 CPUs, 2 workers, 10,000 lines) gives the numbers
`emoarc score` gives on the same lines."""

import json
from pathlib import Path

import numpy as np
import pytest

import emoarc

ray = pytest.importorskip("ray")

N_LINES = 10_000


def corpus_lines(root: Path) -> list[str]:
    """10,000 lines from the repository's own corpus (texts of data/corpus, cycled), so the test needs nothing
    outside the checkout."""
    texts = []
    for path in sorted((root / "data" / "corpus").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            text = " ".join(json.loads(line)["text"].split())  # one line per utterance
            if text:
                texts.append(text)
    return [texts[i % len(texts)] for i in range(N_LINES)]


def test_ray_data_matches_the_cli(cli, root, tmp_path):
    from emoarc.ray_data import score_text_file

    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(corpus_lines(root)) + "\n", encoding="utf-8")
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        # Two workers at half a CPU each leave one of the two CPUs for Ray Data's read tasks.
        scores = score_text_file(str(path), concurrency=2, batch_size=500, backend="auto", num_cpus=0.5)
    finally:
        ray.shutdown()
    assert scores.shape == (N_LINES, 40) and scores.dtype == np.float32
    records = [json.loads(line) for line in cli("score", path, "--precision", "auto").splitlines()]
    expected = np.array([[r["intensities"][c] for c in emoarc.CATEGORIES] for r in records])
    # The CLI prints four decimals; Python's values rounded the same way are the same numbers. Ray's batches of
    # 500 are cut unlike the CLI's, and that changes nothing: the default backend gives each text the same bits
    # in any batch (tests/estimator.rs), so rounding cannot land one unit apart.
    rounded = np.floor(scores.astype(np.float64) * 1e4 + 0.5) / 1e4
    assert expected.shape == scores.shape
    assert np.abs(rounded - expected).max() <= 1e-6
