"""Fits the lexical part of a trained head after training, and installs it beside the network.

The lexicon is a TF-IDF model over the encoder's own wordpieces (train.py's `Lexicon`; emoarc reads it in
src/model/lexical.rs). Trained jointly with the network (`train.py --lexical`), it learns only what the network
gets wrong on its training rows, which the network has nearly learned by heart, so it adds little on new text.
Fitted on its own it makes other mistakes than the network, and the two together rank better than either. So:

1. the lexicon is the `--lexical` wordpieces found in the most training texts;
2. a logistic model per category is fitted on its features, over the cells each source labels (its mask), with
   rows weighted so that each source weighs its `--mix` share, present cells `--positive-weight` times (as the
   network was trained), an L2 penalty from `--l2`;
3. the network's dev logits are read once, and the mixture `beta * network + alpha * lexicon` (and the penalty)
   is chosen on train.py's dev score over a small grid, then the lexicon's intercept on the corpus dev neutral
   lines (below): the test splits are never read;
4. the chosen head goes to `--work` as best-encoder/best-head.safetensors, with report.json, so that
   `train.py --export-only --work DIR --out models/emoarc-minilm` installs it. beta scales the network's last
   layer and alpha the lexical weights and the intercept (`lexical.bias`), so emoarc computes exactly the
   mixture for a text read alone, and the network alone for a text read after a message (src/model/lexical.rs).

    .venv-train/bin/python scripts/fit_lexical.py --init models/emoarc-minilm --work target/lexfit
"""

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T  # noqa: E402  (the training script's data, model, lexicon and dev score)


def sparse_features(lexicon, seqs):
    """The TF-IDF features of `seqs` as a sparse `[n, k]` tensor."""
    rows, cols, vals = [], [], []
    for i, s in enumerate(seqs):
        f = lexicon.features(s)
        if f is None:
            raise SystemExit("fit_lexical reads texts alone: run it without --exchanges")
        idx, val = f
        rows.extend([i] * len(idx))
        cols.extend(idx.tolist())
        vals.extend(val.tolist())
    return torch.sparse_coo_tensor(torch.tensor([rows, cols]), torch.tensor(vals, dtype=torch.float32),
                                   (len(seqs), len(lexicon)), check_invariants=True).coalesce()


def fit(x, target, weight, l2, iters):
    """Weighted logistic regression of every category at once: (W [k, C], b [C]) minimising the mean of
    `weight * BCE` plus `l2 / 2 * |W|^2`."""
    w = torch.zeros(x.shape[1], T.C, requires_grad=True)
    b = torch.zeros(T.C, requires_grad=True)
    total = weight.sum()
    opt = torch.optim.LBFGS([w, b], max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = torch.sparse.mm(x, w) + b
        loss = (F.binary_cross_entropy_with_logits(z, target, reduction="none") * weight).sum() / total
        loss = loss + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", default="models/emoarc-minilm", help="model folder whose trained head gets the lexicon")
    ap.add_argument("--datasets", default="../shared/datasets")
    ap.add_argument("--data", default="data")
    ap.add_argument("--work", default="target/lexfit")
    ap.add_argument("--lexical", type=int, default=8192, help="wordpieces in the lexicon")
    ap.add_argument("--pairs", type=int, default=16384, help="pairs of adjacent wordpieces in the lexicon")
    ap.add_argument("--mix", default="corpus=0.4,goemotions=0.45,empathic=0.05",
                    help="each source's share of the fit's weight (sources without category labels add nothing)")
    ap.add_argument("--positive-weight", type=float, default=3.0,
                    help="weight of labelled-present cells, as the network was trained (train.py's default)")
    ap.add_argument("--l2", default="3e-7,1e-6,3e-6", help="L2 penalties to choose among")
    ap.add_argument("--alpha", default="0.2,0.4,0.6,1", help="lexicon weights to choose among")
    ap.add_argument("--beta", default="1.0",
                    help="network weights to choose among; beta scales the network's last layer, which a text read in "
                         "context (read by the network alone) then sees too, so the default keeps it at 1")
    ap.add_argument("--gamma", default=",".join(f"{i / 20:g}" for i in range(21)),
                    help="intercepts to choose among, from centred (0) to as fitted (1), lowest first")
    ap.add_argument("--only-human", action="store_true",
                    help="lexical weights only for the categories a human-labelled source maps to (GoEmotions, "
                         "Empathic Reactions); the others learn from the authored corpus alone")
    ap.add_argument("--skip", default="", help="categories (comma-separated names) given no lexical weights")
    ap.add_argument("--exclude-words", default="",
                    help="words (comma-separated) whose wordpieces are never lexical features")
    ap.add_argument("--iters", type=int, default=400, help="L-BFGS iterations per fit")
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--xed", type=int, default=0)
    # train.py's data loader reads the exchange sets with this; the lexicon reads a text alone, so by default
    # they are left out (a context line's words would be fitted to labels that depend on the message).
    ap.add_argument("--exchanges", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)

    t0 = time.time()
    tok, model = T.load_plain_head(args.init)
    train, maps = T.load_all(args, "train")
    dev, _ = T.load_all(args, "dev")
    mix = {k: float(v) for k, v in (kv.split("=") for kv in args.mix.split(","))}
    rows = [r for name, part in train.items() if name in mix for r in part]
    share = np.concatenate([np.full(len(part), mix[name] / len(part), np.float32)
                            for name, part in train.items() if name in mix and part])
    seqs = T.tokenize(tok, rows, args.max_len)
    excluded = {i for w in filter(None, args.exclude_words.split(",")) for i in tok.encode(w, add_special_tokens=False).ids}
    lexicon = T.Lexicon.fit(seqs, args.lexical, exclude=excluded, pairs=args.pairs)
    x = sparse_features(lexicon, seqs)
    target = torch.from_numpy(np.stack([r.target for r in rows]))
    weight = np.stack([r.mask for r in rows]) * share[:, None]
    weight = torch.from_numpy(weight * (1.0 + (args.positive_weight - 1.0) * (target.numpy() > 0)))
    if args.only_human:
        human = sorted(set(maps["goemotions"].known) | set(maps["empathic_reactions"].known))
        keep = torch.zeros(T.C)
        keep[human] = 1.0
        weight = weight * keep  # the other categories' columns stay zero: nothing fits them
    for name in filter(None, args.skip.split(",")):
        if name not in T.INDEX:
            raise SystemExit(f"--skip: unknown category {name!r}")
        weight[:, T.INDEX[name]] = 0.0
    dev_seqs = {k: T.tokenize(tok, v, args.max_len) for k, v in dev.items() if v}
    print(f"{len(rows)} training rows, lexicon of {len(lexicon.ids)} wordpieces and {len(lexicon.pairs)} pairs: "
          f"{time.time() - t0:.1f}s", flush=True)

    net = {k: T.predict(model, s) for k, s in dev_seqs.items()}
    dev_x = {k: sparse_features(lexicon, s) for k, s in dev_seqs.items()}
    base = T.dev_scores(dev, net)
    print(f"network alone: {json.dumps(base)} ({time.time() - t0:.1f}s)", flush=True)

    # The mixture's ranking (every AUC and Spearman above) does not depend on a constant per category, so the
    # penalty and the weights are chosen on the dev score first. The lexical model's fitted intercept holds the
    # base rate that the network's logits hold already: added as fitted it counts it twice and pushes every output
    # down (measured: the corpus calibration slope halves); left out, the outputs rise and neutral lines light
    # up. So the intercept is chosen after, between centred (gamma 0: the lexical term averages zero over the
    # training texts) and fitted (gamma 1): the lowest gamma, so the steepest slope, that keeps the corpus dev
    # neutral lines at the network's false-positive rate or below. One gamma for all categories: choosing one per
    # category, each lighting no more corpus dev neutral lines than the network, steepened the dev slope (0.564
    # -> 0.829 on stage 15) but lit 53.6% of GoEmotions dev comments labelled neutral (`emoarc eval`; one gamma:
    # 16.1%; the network alone: 26.6% here), and the own test's neutral lines 3.0% (one gamma: 1.5%): the 324
    # neutral dev lines are too few to fit 40 intercepts to. The GoEmotions neutral share is printed beside each
    # gamma (README, "A lexical head").
    grid, best = [], None
    for l2 in (float(v) for v in args.l2.split(",")):
        w, b = fit(x, target, weight, l2, args.iters)
        lex = {k: torch.sparse.mm(dev_x[k], w).numpy() for k in dev_x}
        for beta in (float(v) for v in args.beta.split(",")):
            for alpha in (float(v) for v in args.alpha.split(",")):
                res = T.dev_scores(dev, {k: (beta * net[k][0] + alpha * lex[k], net[k][1]) for k in net})
                res.update(l2=l2, beta=beta, alpha=alpha)
                grid.append(res)
                if best is None or res["select"] > best[0]["select"]:
                    best = (res, w, b, lex)
                print(f"l2 {l2:g} beta {beta:g} alpha {alpha:g}: select {res['select']:.4f} "
                      f"goemotions {res['goemotions_auc']:.4f} corpus {res['corpus_auc']:.4f} spearman "
                      f"{res['corpus_spearman_present']:.4f}", flush=True)
    res, w, b, lex = best
    centred = -torch.sparse.mm(x, w).mean(0)
    chosen = None
    for gamma in (float(v) for v in args.gamma.split(",")):
        c = (gamma * b + (1.0 - gamma) * centred).numpy()
        r = T.dev_scores(dev, {k: (res["beta"] * net[k][0] + res["alpha"] * (lex[k] + c), net[k][1]) for k in net})
        print(f"gamma {gamma:g}: slope {r['corpus_slope']:.3f} neutral {r['corpus_neutral_fp']:.3f}, GoEmotions "
              f"neutral {r['goemotions_neutral_fp']:.3f} (network alone: {base['corpus_slope']:.3f}, "
              f"{base['corpus_neutral_fp']:.3f}, {base['goemotions_neutral_fp']:.3f})", flush=True)
        if chosen is None and r["corpus_neutral_fp"] <= base["corpus_neutral_fp"]:
            chosen = (gamma, c, r)
    if chosen is None:
        raise SystemExit("no intercept keeps the neutral dev lines at the network's false-positive rate")
    gamma, c, r = chosen
    res = dict(r, l2=res["l2"], beta=res["beta"], alpha=res["alpha"], gamma=gamma)
    c = torch.from_numpy(c)
    print(f"chosen: {json.dumps(res)} ({time.time() - t0:.1f}s)", flush=True)
    with torch.no_grad():
        model.head1.weight.mul_(res["beta"])
        model.head1.bias.mul_(res["beta"])
        model.lex = torch.nn.Parameter(res["alpha"] * w)
        # The intercept goes with the lexicon, so a text read in context gets the network exactly.
        model.lex_bias = res["alpha"] * c
    head = model.head_tensors()
    head.update(model.lexical_tensors(lexicon))
    save_file(head, os.path.join(args.work, "best-head.safetensors"))
    shutil.copy(os.path.join(args.init, "encoder-trained.safetensors"), os.path.join(args.work, "best-encoder.safetensors"))
    json.dump({"args": vars(args), "network": base, "best": res, "grid": grid},
              open(os.path.join(args.work, "report.json"), "w"), indent=1)
    print(f"wrote {args.work}/best-head.safetensors and best-encoder.safetensors", flush=True)


if __name__ == "__main__":
    main()
