"""Refits a model folder's trained head to be less sensitive to small moves of its input, keeping its outputs.

Why: the int8 encoder (`emoarc calibrate`) moves the pooled vector by little (worst cosine about 0.9992 with all
12 products in int8), but the trained head turns that into intensity changes of up to 0.04, over the 0.02 bar,
so only 4 of 12 products may run in int8. This is self-distillation with noise: on the training texts' pooled
vectors p (the encoder is not touched), the new head's outputs on p + noise are pulled toward the old head's
outputs on p, and its outputs on p toward the same. Only the head's two layers and its affect output change.

    .venv-train/bin/python scripts/smooth_head.py --init models/emoarc-minilm --out /tmp/smooth/emoarc-minilm \
        --manifest /tmp/smooth/manifest --sigma 0.002

--out must be a copy of the model folder listed in --manifest (its head file and hash are rewritten there);
then `emoarc calibrate --dry-run --model OUT --manifest MANIFEST` shows what runs in int8 with the new head.

Measured on stage 7 (README, Speed): it does not work. With the int8 encoder's own errors (--int8-model, all 12
products in int8) the worst intensity change on the training rows fell from 0.049 to about 0.039 while the new
head moved up to 0.016 away from the old one on clean input, and on the dev split all 12 products stayed at
0.043 (the bar is 0.02). The int8 error lies along directions the head needs.
"""
import argparse
import copy
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T  # noqa: E402  (the training script's data and model)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", default="models/emoarc-minilm")
    ap.add_argument("--out", required=True, help="a copy of the model folder; its head-trained.safetensors is replaced")
    ap.add_argument("--manifest", required=True, help="the manifest that lists --out (its head's hash is rewritten)")
    ap.add_argument("--datasets", default="../shared/datasets")
    ap.add_argument("--data", default="data")
    ap.add_argument("--rows", type=int, default=20000, help="training texts: the corpus train split, then others")
    ap.add_argument("--sigma", type=float, default=0.002, help="noise per dimension of the unit pooled vector")
    ap.add_argument("--int8-model", default=None,
                    help="instead of noise, the int8 encoder's own error: a copy of the model folder with an int8 "
                         "calibration (emoarc calibrate); its pooled vectors, and the f32 ones, come from the "
                         "emoarc Python package, which must be installed in this venv (the wheel python/ci.sh builds)")
    ap.add_argument("--int8-manifest", default=None, help="the manifest that lists --int8-model")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    args.xed, args.exchanges, args.mix = 0, 0, ""  # load_all reads these: no XED, no exchange rows, no relabelled comments
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    t0 = time.time()
    tok, model = T.load_plain_head(args.init)
    model.eval()
    train, _ = T.load_all(args, "train")
    others = [r for name, part in train.items() if name != "corpus" for r in part]
    random.Random(args.seed).shuffle(others)
    rows = train["corpus"] + others[:max(0, args.rows - len(train["corpus"]))]
    moved = None  # the int8 encoder's pooled vectors of the same rows, when --int8-model is given
    if args.int8_model:
        import emoarc

        texts = [r.text for r in rows]
        def embed(backend, folder, manifest):
            est = emoarc.Estimator(model=folder, manifest=manifest, backend=backend, max_length=args.max_len)
            return F.normalize(torch.from_numpy(np.asarray(est.embed(texts), np.float32)), dim=-1)
        unit = embed("f32", args.init, None)
        moved = embed("int8", args.int8_model, args.int8_manifest)
        cos = (unit * moved).sum(-1)
        print(f"int8 against f32 pooled vectors: worst cosine {float(cos.min()):.5f}, mean {float(cos.mean()):.5f}")
    else:  # the PyTorch encoder's pooled vectors (only this path needs the tokens)
        seqs = T.tokenize(tok, rows, args.max_len)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        unit = torch.zeros(len(seqs), model.head0.in_features)
    with torch.no_grad():
        if moved is None:
            for b in range(0, len(order), 128):
                idx = order[b:b + 128]
                ids, mask = T.collate(seqs, idx)
                unit[idx] = model.pooled(ids, mask)
        teacher_logits, teacher_va = model.head(unit)
        teacher = torch.sigmoid(teacher_logits)
    print(f"{len(rows)} pooled vectors: {time.time() - t0:.1f}s", flush=True)

    student = copy.deepcopy(model)
    params = [p for m in (student.head0, student.head1, student.affect) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=args.lr)

    def gap(noisy):
        """Worst and mean intensity change of the student under one draw of noise, against the teacher."""
        with torch.no_grad():
            out = torch.sigmoid(student.head(F.normalize(unit + noisy, dim=-1))[0])
            d = (out - teacher).abs().amax(1)
        return float(d.max()), float(d.mean())

    probe = moved - unit if moved is not None else torch.randn_like(unit) * args.sigma
    start = gap(probe)
    print(f"start: noise moves intensities by worst {start[0]:.4f}, mean {start[1]:.4f}", flush=True)
    for epoch in range(args.epochs):
        perm = torch.randperm(len(unit))
        for b in range(0, len(perm), 256):
            i = perm[b:b + 256]
            noise = probe[i] if moved is not None else torch.randn_like(unit[i]) * args.sigma
            noisy = F.normalize(unit[i] + noise, dim=-1)
            lc, va_c = student.head(unit[i])
            ln, va_n = student.head(noisy)
            loss = (F.mse_loss(torch.sigmoid(lc), teacher[i]) + F.mse_loss(torch.sigmoid(ln), teacher[i])
                    + F.mse_loss(va_c, teacher_va[i]) + F.mse_loss(va_n, teacher_va[i]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % 5 == 4 or epoch == args.epochs - 1:
            clean, noisy = gap(torch.zeros_like(unit)), gap(probe)
            print(f"epoch {epoch + 1}: clean change worst {clean[0]:.4f} mean {clean[1]:.4f}; noise worst "
                  f"{noisy[0]:.4f} mean {noisy[1]:.4f}", flush=True)

    save_file(student.head_tensors(), os.path.join(args.out, "head-trained.safetensors"))
    T.record_manifest(args.manifest, os.path.basename(os.path.normpath(args.out)), args.out, ["head-trained.safetensors"])
    print(f"wrote {args.out}/head-trained.safetensors ({time.time() - t0:.1f}s)", flush=True)


if __name__ == "__main__":
    main()
