"""Memorisation gap (README, "Limits of the model"): presence AUC and Spearman given presence, macro over
categories, of `emoarc score --precision int16` on the authored corpus's train and dev splits (paraphrases left
out). From the checkout, after `cargo build --release`, in the training venv (numpy, and torch for train.py's
corpus reader and intensity_factor_probe.py's ranks):
    .venv-train/bin/python scripts/memorisation_gap.py MODEL_DIR"""
import json, os, subprocess, sys, tempfile
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T  # noqa: E402  (the corpus reader and emoarc's split)
from intensity_factor_probe import ranks  # noqa: E402  (Spearman's ranks, ties averaged)


def auc(y, s):
    r = ranks(s); p = y.sum(); n = len(y) - p
    return (r[y].sum() - p * (p + 1) / 2) / (p * n)


def score(model, texts):
    """`emoarc score`'s intensities of `texts`, `[n, C]` in the taxonomy's order."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as t:
        t.writelines(json.dumps({"id": str(i), "text": text}) + "\n" for i, text in enumerate(texts))
    try:
        out = subprocess.run(["./target/release/emoarc", "score", t.name, "--model", model, "--precision", "int16"],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    finally:
        os.unlink(t.name)
    return np.array([[json.loads(l)["intensities"][c] for c in T.CATEGORIES] for l in out])


for split in ("train", "dev"):
    rows = T.load_corpus("data", split, leave_out={"real-paraphrases.jsonl"})
    gold, pred = np.stack([r.target for r in rows]), score(sys.argv[1], [r.text for r in rows])
    aucs, sps = [], []
    for k in range(T.C):
        present = gold[:, k] > 0
        if 0 < present.sum() < len(rows):
            aucs.append(auc(present, pred[:, k]))
        if present.sum() >= 3 and len(set(gold[present, k])) > 1:
            sps.append(np.corrcoef(ranks(gold[present, k]), ranks(pred[present, k]))[0, 1])
    print(f"{sys.argv[1]} {split}: {len(rows)} lines, presence AUC {np.mean(aucs):.3f}, "
          f"Spearman given presence {np.nanmean(sps):.3f}")
