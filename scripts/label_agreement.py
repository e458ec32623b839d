"""How well does a second, blind labeller agree with the own test split's labels, beside the model on the same rows?

Issue #10's own-test targets (presence ROC-AUC 0.95, Spearman given presence 0.55, calibration slope 0.8, intensity
pairs 95%) compare the model with one labeller's levels. This script measures how far a second labeller, who
follows the same guide (`data/GUIDE.md`) and never sees the first labels, agrees with them on a seeded sample of
test-split rows and on every intensity pair, and prints the model's figures on exactly the same rows beside it.

    # 1. write the blind tasks (texts only, in a seeded random order; pairs in a random A/B order)
    .venv-train/bin/python scripts/label_agreement.py tasks --out target/agreement
    # 2. a second labeller writes one {"key", "labels"} line per task row, and {"key", "stronger": "a"|"b"} per
    #    pair; `collect` maps the keys back to corpus ids and pair ids and writes data/agreement/
    .venv-train/bin/python scripts/label_agreement.py collect --answers target/agreement
    # 3. the figures (the model read in f32 through train.py's PyTorch copy of its trained head)
    .venv-train/bin/python scripts/label_agreement.py report [--model models/emoarc-minilm]

The metrics follow `emoarc eval`'s definitions: macro presence ROC-AUC over categories with >= 10 positives (the
second labeller's levels are its scores, ties counted half), macro presence F1 (the model's output over a
per-category cut chosen on the corpus dev split; the second labeller's "present"), macro Spearman among present cells (>= 8 present cells
at > 1 level; ties given their mean rank), the slope of output on label over all cells and over present cells, and
the share of intensity pairs ordered right (a tie counts half). A bootstrap over rows gives 95% intervals for the
difference model - second labeller.
"""

import argparse
import glob
import json
import os
import random
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import intensity_factor_probe as P  # noqa: E402  (ranks with ties averaged)
import train as T  # noqa: E402  (the split rule, the taxonomy order, label checks, roc_auc)

SEED = 20261206


def corpus_rows(data_dir, split):
    """Corpus rows of one split as (id, text, labels), in file order (the order `emoarc eval` reads)."""
    out = []
    for path in sorted(glob.glob(os.path.join(data_dir, "corpus", "*.jsonl"))):
        for line in open(path, encoding="utf-8"):
            if line.strip():
                d = json.loads(line)
                if T.split_of(d.get("group") or d["id"]) == split:
                    out.append((d["id"], d["text"], d["labels"]))
    return out


def sample(data_dir, rows):
    """The seeded sample of test rows and the pairs in their A/B order: (row tasks, pair tasks)."""
    rng = random.Random(SEED)
    picked = rng.sample(corpus_rows(data_dir, "test"), rows)
    row_tasks = [{"key": f"r{i:04d}", "id": r[0], "text": r[1]} for i, r in enumerate(picked)]
    pairs = [json.loads(l) for l in open(os.path.join(data_dir, "intensity-pairs.jsonl"), encoding="utf-8") if l.strip()]
    rng.shuffle(pairs)
    pair_tasks = []
    for i, p in enumerate(pairs):
        flip = rng.random() < 0.5
        a, b = (p["stronger"], p["weaker"]) if flip else (p["weaker"], p["stronger"])
        pair_tasks.append({"key": f"p{i:03d}", "id": p["id"], "category": p["category"], "a": a, "b": b,
                           "stronger_is": "a" if flip else "b"})
    return row_tasks, pair_tasks


def cmd_tasks(args):
    row_tasks, pair_tasks = sample(args.data, args.rows)
    os.makedirs(args.out, exist_ok=True)
    shard = lambda items, n: [items[i::n] for i in range(n)]
    for k, part in enumerate(shard(row_tasks, args.row_shards)):
        with open(os.path.join(args.out, f"rows-{k}.jsonl"), "w", encoding="utf-8") as f:
            for t in part:
                f.write(json.dumps({"key": t["key"], "text": t["text"]}, ensure_ascii=False) + "\n")
    for k, part in enumerate(shard(pair_tasks, args.pair_shards)):
        with open(os.path.join(args.out, f"pairs-{k}.jsonl"), "w", encoding="utf-8") as f:
            for t in part:
                f.write(json.dumps({"key": t["key"], "category": t["category"], "a": t["a"], "b": t["b"]},
                                   ensure_ascii=False) + "\n")
    print(f"{len(row_tasks)} rows in {args.row_shards} files, {len(pair_tasks)} pairs in {args.pair_shards} files "
          f"under {args.out}")


def read_answers(paths):
    out = {}
    for path in paths:
        for n, line in enumerate(open(path, encoding="utf-8"), 1):
            if not line.strip():
                continue
            d = json.loads(line)
            if d["key"] in out:
                raise SystemExit(f"{path}:{n}: key {d['key']} answered twice")
            out[d["key"]] = d
    return out


def labels_of(answer, key):
    """An answer's labels in the taxonomy's order; off the taxonomy or the scale stops the collection."""
    if T.label_problem(answer["labels"]):
        raise SystemExit(f"{key}: {T.label_problem(answer['labels'])}")
    return {c: answer["labels"][c] for c in T.CATEGORIES if c in answer["labels"]}


def cmd_check(args):
    """A labeller's self-check of one answers file against its task file: every key once, names and levels valid."""
    tasks = [json.loads(l)["key"] for l in open(args.tasks, encoding="utf-8") if l.strip()]
    answers = read_answers([args.answers])
    problems = [f"{k}: not answered" for k in tasks if k not in answers]
    problems += [f"{k}: not a task of {args.tasks}" for k in answers if k not in tasks]
    for k, d in answers.items():
        if "labels" in d:
            if T.label_problem(d["labels"]):
                problems.append(f"{k}: {T.label_problem(d['labels'])} (names as in data/emonet-taxonomy.json)")
        elif d.get("stronger") not in ("a", "b"):
            problems.append(f"{k}: needs \"labels\" (rows) or \"stronger\": \"a\" or \"b\" (pairs)")
    print("\n".join(problems) if problems else f"ok: {len(answers)} answers, every task answered once")
    sys.exit(1 if problems else 0)


def cmd_collect(args):
    row_tasks, pair_tasks = sample(args.data, args.rows)
    names = sorted(os.listdir(args.answers))
    rows = read_answers([os.path.join(args.answers, n) for n in names if n.startswith("rows-") and n.endswith(".answers.jsonl")])
    pairs = read_answers([os.path.join(args.answers, n) for n in names if n.startswith("pairs-") and n.endswith(".answers.jsonl")])
    missing = [t["key"] for t in row_tasks if t["key"] not in rows] + [t["key"] for t in pair_tasks if t["key"] not in pairs]
    if missing:
        raise SystemExit(f"{len(missing)} tasks unanswered, e.g. {missing[:5]}")
    os.makedirs(os.path.join(args.data, "agreement"), exist_ok=True)
    with open(os.path.join(args.data, "agreement", "second-labels.jsonl"), "w", encoding="utf-8") as f:
        for t in row_tasks:
            labels = labels_of(rows[t["key"]], t["key"])
            f.write(json.dumps({"id": t["id"], "labels": labels}, ensure_ascii=False) + "\n")
    with open(os.path.join(args.data, "agreement", "second-pair-judgements.jsonl"), "w", encoding="utf-8") as f:
        for t in pair_tasks:
            pick = pairs[t["key"]]["stronger"]
            if pick not in ("a", "b"):
                raise SystemExit(f"{t['key']}: stronger must be a or b, not {pick!r}")
            f.write(json.dumps({"id": t["id"], "second_labeller_right": pick == t["stronger_is"]}) + "\n")
    print(f"wrote {len(row_tasks)} second labels and {len(pair_tasks)} pair judgements under {args.data}/agreement")


# ------------------------------------------------------------------------------------------------------- report


def best_thresholds(score, gold):
    """Per category, the cut on `score` that maximises F1 against presence in `gold` (the dev split's)."""
    cuts = np.full(T.C, np.inf)
    for c in range(T.C):
        lab = gold[:, c] > 0
        if lab.any():
            order = np.argsort(-score[:, c], kind="stable")
            tp = np.cumsum(lab[order])
            f1 = 2 * tp / (np.arange(1, len(order) + 1) + lab.sum())
            k = int(np.argmax(f1))
            below = score[order[k + 1], c] if k + 1 < len(order) else -np.inf
            cuts[c] = (score[order[k], c] + below) / 2
    return cuts


def figures(score, gold, cuts=None):
    """Row metrics of `score` [n, C] against `gold` [n, C]; presence F1 at `cuts` (default: any output > 0)."""
    aucs, rhos, f1s = [], [], []
    cuts = np.zeros(T.C) if cuts is None else cuts
    for c in range(T.C):
        lab = (gold[:, c] > 0).astype(np.float64)
        if lab.sum() >= 10 and (1 - lab).sum() >= 10:
            aucs.append(T.roc_auc(score[:, c], lab))
            said = score[:, c] > cuts[c]
            f1s.append(2 * (said & (lab > 0)).sum() / (said.sum() + lab.sum()))
        p = gold[:, c] > 0
        if p.sum() >= 8 and len(set(gold[p, c])) > 1 and len(set(score[p, c])) > 1:
            rhos.append(np.corrcoef(P.ranks(score[p, c]), P.ranks(gold[p, c]))[0, 1])
    present = gold > 0
    return {
        "presence ROC-AUC, macro": float(np.mean(aucs)),
        "presence F1, macro": float(np.mean(f1s)),
        "Spearman among present cells, macro": float(np.mean(rhos)),
        "calibration slope, all cells": float(np.polyfit(gold.ravel(), score.ravel(), 1)[0]),
        "calibration slope, present cells": float(np.polyfit(gold[present], score[present], 1)[0]),
        "R^2 of label on output, all cells": float(np.corrcoef(gold.ravel(), score.ravel())[0, 1] ** 2),
        **{f"mean at label {v:g}": float(score[gold == v].mean()) for v in (0, 0.25, 0.5, 0.75, 1.0) if (gold == v).any()},
    }


def matrix(labels_by_id, ids):
    return np.stack([T.target_of(labels_by_id[i]) for i in ids]).astype(np.float64)


def model_scorer(folder):
    """A function from texts to their intensities [n, C], read alone by the model folder's trained head in f32
    through `train.py`'s PyTorch copy of it (the shipped binary prints four decimals, which would tie the many
    near-zero outputs); the model is loaded once."""
    import torch

    tok, model, lexicon = T.load_model_and_tokenizer(folder)

    def scores(texts):
        seqs = T.tokenize(tok, [T.Row(t, "corpus") for t in texts], 256)
        feats = [lexicon.features(q) for q in seqs] if lexicon else None
        with torch.no_grad():
            logits, _ = T.predict(model, seqs, feats=feats)
        return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))

    return scores


def print_comparison(model, other, gold, cuts, resamples, pairs=None):
    """The table of `figures` for the model and the second labeller against the first labels, with a bootstrap
    over rows of their difference; `pairs` (each pair right or not, for the model and the second labeller) adds
    a row resampled over pairs. Returns both columns' figures."""
    fm, fs = figures(model, gold, cuts), figures(other, gold)
    rng = np.random.default_rng(SEED)
    boot = {k: [] for k in fm}
    boot_pairs = []
    for _ in range(resamples):
        i = rng.integers(0, len(gold), len(gold))
        bm, bs = figures(model[i], gold[i], cuts), figures(other[i], gold[i])
        for k in boot:
            boot[k].append(bm[k] - bs[k])
        if pairs is not None:
            j = rng.integers(0, len(pairs[0]), len(pairs[0]))
            boot_pairs.append(pairs[0][j].mean() - pairs[1][j].mean())
    print(f"{'metric':<40} {'model':>7} {'second':>7}  model - second [95% CI, {resamples} row resamples]")
    for k in fm:
        print(f"{k:<40} {fm[k]:7.3f} {fs[k]:7.3f}  {fm[k] - fs[k]:+.3f} {interval(boot[k])}")
    if pairs is not None:
        m, o = pairs[0].mean(), pairs[1].mean()
        print(f"{'intensity pairs ordered right':<40} {m:7.3f} {o:7.3f}  {m - o:+.3f} {interval(boot_pairs)}  "
              f"({len(pairs[0])} pairs)")
    return fm, fs


def interval(xs):
    return f"[{np.quantile(xs, 0.025):+.3f}, {np.quantile(xs, 0.975):+.3f}]"


def cmd_report(args):
    first = {r[0]: (r[1], r[2]) for r in corpus_rows(args.data, "test")}
    second = {json.loads(l)["id"]: json.loads(l)["labels"]
              for l in open(os.path.join(args.data, "agreement", "second-labels.jsonl"), encoding="utf-8") if l.strip()}
    ids = list(second)
    gold = matrix({i: first[i][1] for i in ids}, ids)
    other = matrix(second, ids)
    score = model_scorer(args.model)
    every = list(first)
    full = score([first[i][0] for i in every])
    at = {ident: k for k, ident in enumerate(every)}
    model = full[[at[i] for i in ids]]

    judged = [json.loads(l) for l in open(os.path.join(args.data, "agreement", "second-pair-judgements.jsonl"),
                                          encoding="utf-8") if l.strip()]
    pairs = {p["id"]: p for p in (json.loads(l) for l in open(os.path.join(args.data, "intensity-pairs.jsonl"),
                                                              encoding="utf-8") if l.strip())}
    out = score([t for j in judged for t in (pairs[j["id"]]["stronger"], pairs[j["id"]]["weaker"])])
    pair_model, pair_second = [], []
    for k, j in enumerate(judged):
        c = T.INDEX[pairs[j["id"]]["category"]]
        s, w = out[2 * k, c], out[2 * k + 1, c]
        pair_model.append(1.0 if s > w else 0.5 if s == w else 0.0)
        pair_second.append(1.0 if j["second_labeller_right"] else 0.0)
    pair_model, pair_second = np.array(pair_model), np.array(pair_second)
    dev = corpus_rows(args.data, "dev")
    cuts = best_thresholds(score([r[1] for r in dev]), matrix({r[0]: r[2] for r in dev}, [r[0] for r in dev]))

    print(f"own test split: {len(ids)} rows sampled (seed {SEED}) of {len(first)}; the first labels are data/corpus's")
    whole = figures(full, matrix({i: first[i][1] for i in every}, every))
    print(f"model: {args.model}, trained head in f32; on the whole test split ({len(every)} rows) it scores AUC "
          f"{whole['presence ROC-AUC, macro']:.3f}, Spearman {whole['Spearman among present cells, macro']:.3f}, "
          f"slope {whole['calibration slope, all cells']:.3f} (`emoarc eval`'s figures, auto precision)")
    print("second labeller: data/agreement/second-labels.jsonl, data/agreement/second-pair-judgements.jsonl")
    fm, fs = print_comparison(model, other, gold, cuts, args.resamples, (pair_model, pair_second))
    both = ((pair_model == 0) & (pair_second == 0)).sum()
    print(f"pairs the model orders wrong: {int((pair_model < 1).sum())}; the second labeller also picks the other "
          f"text in {int(both)} of them")
    if args.json:
        json.dump({"rows": len(ids), "model": fm, "second": fs,
                   "pairs": {"model": float(pair_model.mean()), "second": float(pair_second.mean())}},
                  open(args.json, "w"), indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data")
    ap.add_argument("--rows", type=int, default=600, help="test rows in the sample")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tasks")
    t.add_argument("--out", default="target/agreement")
    t.add_argument("--row-shards", type=int, default=6)
    t.add_argument("--pair-shards", type=int, default=2)
    k = sub.add_parser("check")
    k.add_argument("tasks")
    k.add_argument("answers")
    c = sub.add_parser("collect")
    c.add_argument("--answers", default="target/agreement")
    r = sub.add_parser("report")
    r.add_argument("--model", default="models/emoarc-minilm")
    r.add_argument("--resamples", type=int, default=1000)
    r.add_argument("--json", default=None)
    args = ap.parse_args()
    {"tasks": cmd_tasks, "check": cmd_check, "collect": cmd_collect, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
