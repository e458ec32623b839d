"""Scoring a large corpus with Ray Data: ``ds.map_batches(EmoarcScorer, ...)`` keeps one :class:`emoarc.Estimator`
per worker (loaded once, in the worker) and adds the 40 intensities to each batch. ::

    import ray
    from emoarc.ray_data import EmoarcScorer
    ds = ray.data.read_text("corpus.txt")                       # a "text" column
    scored = ds.map_batches(EmoarcScorer, fn_constructor_kwargs={"backend": "int16"},
                            batch_size=512, concurrency=2, batch_format="numpy")

On a multi-node cluster the same code runs after ``ray.init(address="auto")``: Ray places the workers on the
nodes (``concurrency`` workers in all), and each worker needs the package installed (or a runtime_env with
the wheel). Ray itself is not a dependency of emoarc; install ``emoarc[ray]``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


class EmoarcScorer:
    """A callable class for ``Dataset.map_batches``: the batch's ``text_column`` in, the same batch out with
    ``intensities`` (float32, ``(n, 40)``, columns in ``emoarc.CATEGORIES`` order) added. A blank or refused
    text gets a NaN row and its reason in ``emoarc_error`` (empty string when scored), so one bad line never
    fails a job. Pin ``backend`` when results are compared across machines."""

    def __init__(self, model: Optional[str] = None, head: Optional[str] = None, backend: str = "auto",
                 text_column: str = "text", **options: Any):
        from . import Estimator

        self.estimator = Estimator(model, head, backend, **options)
        self.text_column = text_column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch[self.text_column]]
        scores, problems = self.estimator.score_each(texts)
        out = dict(batch)
        out["intensities"] = scores
        out["emoarc_error"] = np.array([p or "" for p in problems], dtype=object)
        return out


def score_dataset(ds: Any, *, concurrency: int = 2, batch_size: int = 512, backend: str = "auto",
                  text_column: str = "text", num_cpus: float = 1, **options: Any) -> Any:
    """``ds`` with ``intensities`` and ``emoarc_error`` columns added, scored by ``concurrency`` workers that each
    hold one estimator and reserve ``num_cpus`` (the estimator itself uses every core it is given, so on a small
    machine reserve less than a core each and leave Ray a CPU for reading, or the readers wait for ever). Lazy,
    like every Ray Data transform: write it out or iterate it to run it."""
    return ds.map_batches(
        EmoarcScorer,
        fn_constructor_kwargs={"backend": backend, "text_column": text_column, **options},
        batch_size=batch_size,
        concurrency=concurrency,
        num_cpus=num_cpus,
        batch_format="numpy",
    )


def score_text_file(path: str, **kwargs: Any) -> np.ndarray:
    """The intensities of every line of a text file, ``(n, 40)`` float32 in line order (blank lines give NaN
    rows), scored with Ray Data on the Ray instance already started (or a local one)."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # rows come back in line order, to match `emoarc score`
    scored = score_dataset(ray.data.read_text(path), **kwargs)
    batches = [b["intensities"] for b in scored.iter_batches(batch_format="numpy", batch_size=None)]
    return np.concatenate(batches) if batches else np.zeros((0, 40), np.float32)
