"""The teacher for distillation: stage 16 and a head on all-mpnet-base-v2's frozen features, averaged, labels
every training text with 40 intensity logits and valence/arousal (`train.py --teacher`).

Why: on the dev splits, the average of the shipped model's logits and a probe head on MPNet's first six layers
(`scripts/encoder_probe.py`'s `mpnet-6` row) reads real and authored text better than either (GoEmotions AUC,
relabelled comments, EmoBank, Empathic Reactions, the corpus's AUC and Spearman given presence), but MPNet is six
times slower and too large to ship. Its outputs on the training texts let the shipped three-layer encoder learn
from it instead: a dense 40-category target on every GoEmotions comment, where GoEmotions itself says nothing about
18 of the 40 categories, and valence and arousal on texts EmoBank does not cover.

The MPNet head is `encoder_probe.fit` on the probe's train sets (its features cached in `--work`; the ones not
there are encoded here, about 50 texts/s on 2 cores), its step chosen on the dev select score; the shipped model
reads each text alone with its lexicon. `--weight` is MPNet's share of the average. Prints the teacher's dev row
beside its two parts (`encoder_probe`'s definitions) and writes `--out` (texts, logits, affect).

    .venv-train/bin/python scripts/distill_teacher.py --mpnet DIR --out target/teacher/teacher.npz
"""

import hashlib
import os
import sys
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import encoder_probe as E  # noqa: E402
import train as T  # noqa: E402


def train_texts(args):
    """Every text a training run reads in its train split (each once), as train.py loads them."""
    ns = types.SimpleNamespace(data=args.data, datasets=args.datasets, mix="corpus=1", exchanges=1,
                               keep_relabelled_goemotions=False, xed=0)
    parts, _ = T.load_all(ns, "train")
    return sorted({r.text for rows in parts.values() for r in rows})


def main():
    ap = E.probe_options(__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--weight", type=float, default=0.5, help="MPNet head's share of the averaged logits")
    ap.set_defaults(steps=1000)  # the probe head's step is chosen among 500 and 1000, as the teacher was made
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sets, pairs = E.load_sets(args.data, args.datasets, 12000)
    mpnet = E.MPNet(args.mpnet, (6,), run=6)
    feats = E.features(mpnet, sets, args.work)["mpnet-6"][0]
    step, mp_dev, head = E.fit(feats, sets, args.steps, args.seed)
    loaded = E.load_shipped(args.model)
    ship_dev = E.shipped(loaded, {k: sets[k] for k in E.DEV + ("pairs",)})
    w = args.weight
    mix = lambda a, b: tuple(w * x + (1 - w) * y for x, y in zip(a, b))
    print(E.TABLE)
    E.report(f"{args.model} as shipped", 384, "", "", ship_dev, sets, pairs)
    E.report("mpnet-6 head", 768, "", step, mp_dev, sets, pairs)
    E.report(f"teacher ({w} mpnet-6 head)", "", "", "", {k: mix(mp_dev[k], ship_dev[k]) for k in ship_dev}, sets, pairs)

    texts = train_texts(args)
    known = {r.text: feats[k][i] for k, rows in sets.items() for i, r in enumerate(rows)}
    todo = [t for t in texts if t not in known]
    # The texts outside the probe's sets are cached too, under a key of those texts.
    extra = os.path.join(args.work, "mpnet-6-train-extra.npz")
    key = hashlib.sha256("\n".join(todo).encode()).hexdigest()
    if not (os.path.exists(extra) and E.cached_key(extra) == key):
        print(f"{len(texts)} training texts, {len(todo)} to encode with MPNet", flush=True)
        np.savez(extra, _key=key, x=mpnet.encode(todo)[6])
    known.update(zip(todo, np.load(extra)["x"]))
    mp_logits, mp_affect = head(np.stack([known[t] for t in texts]))
    ship = E.shipped(loaded, {"train": [T.Row(t, "corpus") for t in texts]})["train"]
    logits, affect = mix((mp_logits, mp_affect), ship)
    np.savez(args.out, texts=np.array(texts, dtype=object), logits=logits.astype(np.float32),
             affect=affect.astype(np.float32), weight=w)
    print(f"wrote {args.out}: {len(texts)} texts", flush=True)


if __name__ == "__main__":
    main()
