"""Memorisation gap (README, "Limits of the model"): presence AUC and Spearman given presence, macro over
categories, of `emoarc score --precision int16` on the authored corpus's train and dev splits (paraphrases left
out). From the checkout, after `cargo build --release`, in the training venv (numpy, and torch for the shared
ranks of intensity_factor_probe.py):
    .venv-train/bin/python scripts/memorisation_gap.py MODEL_DIR
The split is emoarc's (src/data.rs, Split::of; train.split_of): by the line's group, else its id."""
import glob, json, os, subprocess, sys, tempfile
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from intensity_factor_probe import ranks  # noqa: E402  (Spearman's ranks, ties averaged)
from train import split_of  # noqa: E402  (emoarc's split of an id or group)


rows = []
for f in sorted(glob.glob("data/corpus/*.jsonl")):
    if f.endswith("real-paraphrases.jsonl"):
        continue
    for line in open(f, encoding="utf-8"):
        if line.strip():
            d = json.loads(line)
            rows.append((split_of(d.get("group") or d["id"]), d["text"], d.get("labels", {})))
tax = [c["name"] for c in json.load(open("data/emonet-taxonomy.json"))["categories"]]
with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as t:
    for i, (_, text, _) in enumerate(rows):
        t.write(json.dumps({"id": str(i), "text": text}) + "\n")
out = subprocess.run(["./target/release/emoarc", "score", t.name, "--model", sys.argv[1], "--precision", "int16"],
                     capture_output=True, text=True, check=True).stdout.splitlines()
os.unlink(t.name)
pred = np.array([[json.loads(l)["intensities"][c] for c in tax] for l in out])
gold = np.array([[r[2].get(c, 0.0) for c in tax] for r in rows])
def auc(y, s):
    r = ranks(s); p = y.sum(); n = len(y) - p
    return (r[y].sum() - p * (p + 1) / 2) / (p * n)
for sp in ("train", "dev"):
    idx = np.array([r[0] == sp for r in rows])
    aucs, sps = [], []
    for k in range(len(tax)):
        y, s = gold[idx, k] > 0, pred[idx, k]
        if 0 < y.sum() < len(y):
            aucs.append(auc(y, s))
        pres = gold[idx, k] > 0
        if pres.sum() >= 3 and len(set(gold[idx, k][pres])) > 1:
            sps.append(np.corrcoef(ranks(gold[idx, k][pres]), ranks(s[pres]))[0, 1])
    print(f"{sys.argv[1]} {sp}: {idx.sum()} lines, presence AUC {np.mean(aucs):.3f}, Spearman given presence {np.nanmean(sps):.3f}")
