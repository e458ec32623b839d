"""Can a recalibration fix the trained head's compressed intensities without retraining?

Fits maps of the head's logits on the authored corpus's dev split and reports, on its test split, what
`emoarc eval` calls calibration: the slope of output on label over all cells, the mean output at each label
level, the share of the neutral lines (`data/neutral.txt`) with any output above 0.5, and presence ROC-AUC:

- `global affine (squared error)`: one `sigmoid(a z + c)` for all categories, fitted to the labels;
- `per-category affine`: one per category, fitted the same way, pulled toward the global one;
- `global affine (level means)`: fitted so the mean output at each label level (0, .25, .5, .75, 1) is the level;
- `temperature (level means)`: the same with c = 0, so no output crosses 0.5;
- `upper stretch (level means)`: `z -> k z` where `z > 0` only, so no output at or below 0.5 moves at all.

A map that is monotone in each category leaves presence AUC and Spearman among present cells unchanged, so the
question is only whether it can raise the slope without false positives on neutral text.

    .venv-train/bin/python scripts/calibration_probe.py [--model models/emoarc-minilm]
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T  # noqa: E402  (the training script's model, corpus reader and AUC)

LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def fit_affine(loss, start=(1.0, 0.0)):
    """Coarse-to-fine grid search of (a, c): no optimiser dependency, and two parameters need none."""
    best = np.array(start, dtype=np.float64)
    a_span, c_span = 4.0, 8.0
    for _ in range(6):
        grid = [(a, c) for a in np.linspace(max(0.05, best[0] - a_span), best[0] + a_span, 25)
                for c in np.linspace(best[1] - c_span, best[1] + c_span, 25)]
        best = np.array(min(grid, key=lambda p: loss(*p)))
        a_span, c_span = a_span / 4, c_span / 4
    return best


def report(name, out, target, neutral_out):
    slope = np.polyfit(target.ravel(), out.ravel(), 1)[0]
    levels = [out[np.isclose(target, l)].mean() for l in LEVELS]
    neutral_fp = (neutral_out > 0.5).any(axis=1).mean()
    aucs = [T.roc_auc(out[:, c], (target[:, c] > 0).astype(np.float64)) for c in range(T.C)
            if 5 <= (target[:, c] > 0).sum() <= len(target) - 5]
    print(f"| {name} | {slope:.3f} | {' / '.join(f'{x:.3f}' for x in levels)} | {neutral_fp:.1%} | {np.mean(aucs):.4f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/emoarc-minilm")
    ap.add_argument("--data", default="data")
    args = ap.parse_args()

    from tokenizers import Tokenizer

    model, lexicon = T.load_model_folder(args.model)
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()

    def logits(rows):
        seqs = T.tokenize(tok, rows, 256)
        z, _ = T.predict(model, seqs, feats=[lexicon.features(q) for q in seqs] if lexicon else None)
        return z.astype(np.float64)

    dev, test = T.load_corpus(args.data, "dev"), T.load_corpus(args.data, "test")
    neutral = [T.Row(l.strip(), "neutral") for l in open(os.path.join(args.data, "neutral.txt")) if l.strip()]
    zd, zt, zn = logits(dev), logits(test), logits(neutral)
    td, tt = np.array([r.target for r in dev]), np.array([r.target for r in test])

    print("| map (fitted on corpus dev) | slope | mean output at 0 / .25 / .5 / .75 / 1 | neutral > 0.5 | presence AUC |")
    print("|---|---|---|---|---|")
    report("none (shipped)", sigmoid(zt), tt, sigmoid(zn))
    g = fit_affine(lambda a, c: ((sigmoid(a * zd + c) - td) ** 2).mean())
    report(f"global affine, squared error (a={g[0]:.2f}, c={g[1]:.2f})", sigmoid(g[0] * zt + g[1]), tt, sigmoid(g[0] * zn + g[1]))
    per = np.array([fit_affine(lambda a, c, k=k: ((sigmoid(a * zd[:, k] + c) - td[:, k]) ** 2).mean()
                               + 1e-3 * ((a - g[0]) ** 2 + (c - g[1]) ** 2), start=g) for k in range(T.C)])
    report("per-category affine, squared error", sigmoid(per[:, 0] * zt + per[:, 1]), tt, sigmoid(per[:, 0] * zn + per[:, 1]))

    def level_loss(a, c):
        o = sigmoid(a * zd + c)
        return sum((o[np.isclose(td, l)].mean() - l) ** 2 for l in LEVELS)

    m = fit_affine(level_loss)
    report(f"global affine, level means (a={m[0]:.2f}, c={m[1]:.2f})", sigmoid(m[0] * zt + m[1]), tt, sigmoid(m[0] * zn + m[1]))
    # A temperature alone (c = 0): outputs of 0.5 stay where they are, so nothing crosses 0.5 either way and the
    # neutral false positives cannot change; it only spreads the outputs away from 0.5.
    grid = np.linspace(0.5, 4.0, 351)
    a = grid[np.argmin([level_loss(a, 0.0) for a in grid])]
    report(f"temperature, level means (a={a:.2f}, c=0)", sigmoid(a * zt), tt, sigmoid(a * zn))

    # A stretch of the upper half only: z -> k z where z > 0. Outputs at or below 0.5 stay exactly where they
    # are, so the neutral false positives cannot change, and within a category no order changes.
    def stretch(z, k):
        return sigmoid(np.where(z > 0, k * z, z))

    def upper_loss(k):
        o = stretch(zd, k)
        return sum((o[np.isclose(td, l)].mean() - l) ** 2 for l in LEVELS)

    grid = np.linspace(1.0, 6.0, 501)
    k = grid[np.argmin([upper_loss(k) for k in grid])]
    report(f"upper stretch, level means (k={k:.2f}), dev split", stretch(zd, k), td, stretch(zn, k))
    report(f"upper stretch, level means (k={k:.2f})", stretch(zt, k), tt, stretch(zn, k))


if __name__ == "__main__":
    main()
