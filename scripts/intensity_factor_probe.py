"""Does a text-level intensity factor order present emotions better, and does it hold on real text?

The own test split's Spearman among present cells (0.491 for stage 16) is one of issue #10's unmet targets. One
cheap lever: a single number per text, "how intense is this text", added to every category's logit where the
category is likely present: `z_c + w * f(text) * sigmoid(z_c + b)`. Within a category it moves texts with strong
wording up among the present ones, and the gate keeps it away from absent categories. Two factors are tried:

- `arousal`: the head's learned arousal (trained on EmoBank's real sentences), standardised;
- `ridge`: a ridge regression from the head's hidden activations and affect to the mean labelled level of a
  corpus train text's present categories, standardised.

Both are fitted on the corpus train split and judged on dev splits only: the corpus (Spearman given presence,
AUC, slope, neutral lines with an output over 0.5), GoEmotions (presence AUC over the mapped categories, neutral
comments over 0.5) and Empathic Reactions (Pearson of Affection and Distress with the essays' human ratings, the
only real-text intensity ratings the datasets hold). The figures are this script's own macro definitions, for
comparing rows with each other; `emoarc eval` gives the reported ones.

    .venv-train/bin/python scripts/intensity_factor_probe.py [--model models/emoarc-minilm] [--datasets ../shared/datasets]
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T  # noqa: E402  (the training script's model, readers and label maps)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def ranks(x):
    """Ranks from 1, ties given their mean rank (Spearman's)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse]


def spearman_present(scores, target):
    """Spearman among present cells with ties averaged; `train.dev_scores` breaks the labels' ties by position,
    which moves this figure by hundredths on the corpus's five levels."""
    out = []
    for c in range(T.C):
        p = target[:, c] > 0
        if p.sum() >= 8 and len(set(target[p, c])) > 1:
            out.append(np.corrcoef(ranks(scores[p, c]), ranks(target[p, c]))[0, 1])
    return float(np.mean(out))


def head_inputs(model, lexicon, tok, rows):
    """(hidden activations, logits with the lexicon, affect) of each row, as the shipped head computes them."""
    seqs = T.tokenize(tok, rows, 256)
    feats = [lexicon.features(q) for q in seqs] if lexicon else None
    hidden = np.zeros((len(rows), model.head0.out_features), np.float64)
    logits, affect = np.zeros((len(rows), T.C)), np.zeros((len(rows), 2))
    with torch.no_grad():
        for idx in T.by_length(seqs, 128):
            ids, mask = T.collate(seqs, idx)
            unit = model.pooled(ids, mask)
            hidden[idx] = torch.nn.functional.gelu(model.head0(unit)).numpy()
            z, va = model.head(unit, T.lex_batch(feats, idx))
            logits[idx], affect[idx] = z.numpy(), va.numpy()
    return dict(hidden=hidden, logits=logits, affect=affect, target=np.array([r.target for r in rows]))


def probe_setup(doc):
    """The probes' shared start: their options (`--model`, `--data`, `--datasets`, `--threads`), the model folder's
    trained head in eval mode with its lexicon, its tokenizer, and the label maps."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/emoarc-minilm")
    ap.add_argument("--data", default="data")
    ap.add_argument("--datasets", default="../shared/datasets")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tok, model, lexicon = T.load_model_and_tokenizer(args.model)
    model.eval()
    maps = {n: T.LabelMap(os.path.join(args.data, "label-maps", f"{n}.tsv")) for n in ("goemotions", "empathic_reactions")}
    return args, model, lexicon, tok, maps


def main():
    args, model, lexicon, tok, maps = probe_setup(__doc__)
    sets = {
        "train": T.load_corpus(args.data, "train"),
        "corpus": T.load_corpus(args.data, "dev"),
        "goemotions": T.load_goemotions(args.datasets, maps, "dev"),
        "empathic": T.load_empathic(args.datasets, maps, "dev"),
    }
    d = {name: head_inputs(model, lexicon, tok, rows) for name, rows in sets.items()}

    # Factors, fitted on the corpus train texts that have any label; standardised by those texts' spread.
    train = d["train"]
    labelled = train["target"].max(1) > 0
    level = (train["target"] * (train["target"] > 0)).sum(1) / np.maximum((train["target"] > 0).sum(1), 1)
    x = lambda s: np.concatenate([s["hidden"], s["affect"]], 1)
    mu, sd = x(train)[labelled].mean(0), x(train)[labelled].std(0) + 1e-6
    xs = (x(train)[labelled] - mu) / sd
    w = np.linalg.solve(xs.T @ xs + 1000.0 * np.eye(xs.shape[1]), xs.T @ (level[labelled] - level[labelled].mean()))

    def standardised(raw):
        ref = raw(train)[labelled]
        return lambda s: (raw(s) - ref.mean()) / ref.std()

    factors = {
        "arousal": standardised(lambda s: s["affect"][:, 1]),
        "ridge": standardised(lambda s: ((x(s) - mu) / sd) @ w),
    }
    aff, dis = T.INDEX["Affection"], T.INDEX["Distress"]
    print("| factor | w | b | corpus Spearman given presence | corpus AUC | slope | corpus neutral > 0.5 "
          "| GoEmotions AUC | GoEmotions neutral > 0.5 | Empathic Affection / Distress |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, weight, gate in [("none", 0.0, 0.0), ("arousal", 0.5, 2.0), ("arousal", 1.0, 2.0),
                               ("ridge", 1.0, 2.0), ("ridge", 2.0, 2.0), ("ridge", 2.0, 3.0)]:
        z = {}
        for k in ("corpus", "goemotions", "empathic"):
            s = d[k]
            shift = 0.0 if weight == 0 else weight * factors[name](s)[:, None] * sigmoid(s["logits"] + gate)
            z[k] = s["logits"] + shift
        # Presence AUC, slope and neutral rates as train.py's dev scores compute them.
        scores = T.dev_scores({k: sets[k] for k in ("corpus", "goemotions")},
                              {k: (z[k], d[k]["affect"]) for k in ("corpus", "goemotions")})
        oe = sigmoid(z["empathic"])
        pe = [np.corrcoef(oe[:, k], d["empathic"]["target"][:, k])[0, 1] for k in (aff, dis)]
        print(f"| {name} | {weight} | {gate} | {spearman_present(z['corpus'], d['corpus']['target']):.4f} "
              f"| {scores['corpus_auc']:.4f} | {scores['corpus_slope']:.3f} | {scores['corpus_neutral_fp']:.1%} "
              f"| {scores['goemotions_auc']:.4f} | {scores['goemotions_neutral_fp']:.1%} | {pe[0]:.3f} / {pe[1]:.3f} |")

if __name__ == "__main__":
    main()
