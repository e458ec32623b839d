#!/usr/bin/env python3
"""Independent reference for the shipped model: a plain-numpy BERT forward pass and a pure-Python WordPiece
tokenizer, reading the shipped files directly (no candle, no tokenizers library). Its output is the fixture
tests/fixtures/reference_embeddings.json that the Rust tests compare against (tolerance 1e-4).

Usage: python3 tests/reference/reference_embeddings.py models/emoarc-minilm [HEAD] > tests/fixtures/reference_embeddings.json
HEAD defaults to zero-shot (a linear head). Needs only numpy.
"""
import json
import math
import struct
import sys
import unicodedata

import numpy as np

TEXTS = [
    "I am absolutely furious",
    "The train leaves from platform four.",
    "Thank you so much, you saved my day",
    "ok so my landlord STILL hasn't fixed the heater and it's been three weeks... honestly I'm done",
    "Wait, what?! You're moving to Lisbon next month?",
    "hi",
    "My grandmother passed away last night. I keep thinking about the summers at her house, the smell of "
    "bread in the morning, and how she always knew when something was wrong before I said a word.",
]

DTYPES = {"F16": np.float16, "F32": np.float32, "I8": np.int8, "BF16": None}


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=DTYPES[meta["dtype"]]).reshape(meta["shape"])
        out[name] = arr.astype(np.float32)
    # A tensor stored as int8 rows (NAME.q8 with one f32 NAME.scale per row) reads as q8 * scale.
    for name in [k for k in out if k.endswith(".q8")]:
        base = name[: -len(".q8")]
        out[base] = out.pop(name) * out.pop(base + ".scale")[:, None]
    return out


# --- WordPiece, as BERT's uncased tokenizer defines it -------------------------------------------------------

def is_punct(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def basic_tokens(text):
    text = "".join(" " if unicodedata.category(c) in ("Zs",) or c in "\t\n\r" else c for c in text)
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    tokens = []
    for word in text.split():
        cur = ""
        for ch in word:
            if is_punct(ch):
                if cur:
                    tokens.append(cur)
                    cur = ""
                tokens.append(ch)
            else:
                cur += ch
        if cur:
            tokens.append(cur)
    return tokens


def wordpiece(token, vocab):
    if len(token) > 100:
        return [vocab["[UNK]"]]
    ids, start = [], 0
    while start < len(token):
        end, found = len(token), None
        while start < end:
            piece = token[start:end] if start == 0 else "##" + token[start:end]
            if piece in vocab:
                found = vocab[piece]
                break
            end -= 1
        if found is None:
            return [vocab["[UNK]"]]
        ids.append(found)
        start = end
    return ids


def tokenize(text, vocab):
    ids = [vocab["[CLS]"]]
    for t in basic_tokens(text):
        ids.extend(wordpiece(t, vocab))
    ids.append(vocab["[SEP]"])
    return ids


# --- BERT forward --------------------------------------------------------------------------------------------

def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def encode(ids, W, cfg):
    eps = cfg["layer_norm_eps"]
    h = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    d = h // heads
    n = len(ids)
    x = (W["embeddings.word_embeddings.weight"][ids]
         + W["embeddings.position_embeddings.weight"][:n]
         + W["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda t, name: t @ W[p + name + ".weight"].T + W[p + name + ".bias"]
        q = lin(x, "attention.self.query").reshape(n, heads, d).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(n, heads, d).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(n, heads, d).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, h)
        x = layer_norm(lin(ctx, "attention.output.dense") + x,
                       W[p + "attention.output.LayerNorm.weight"], W[p + "attention.output.LayerNorm.bias"], eps)
        inter = gelu(lin(x, "intermediate.dense"))
        x = layer_norm(lin(inter, "output.dense") + x,
                       W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"], eps)
    return x.mean(0)  # one unpadded sequence: the masked mean is the plain mean


def main():
    model_dir = sys.argv[1]
    head_name = sys.argv[2] if len(sys.argv) > 2 else "zero-shot"
    spec = json.load(open(f"{model_dir}/emoarc.json"))
    HEAD = spec["heads"][head_name]
    cfg = json.load(open(f"{model_dir}/{spec['encoder']['config']}"))
    tok = json.load(open(f"{model_dir}/{spec['encoder']['tokenizer']}"))
    vocab = tok["model"]["vocab"]
    W = {k: v.astype(np.float64) for k, v in load_safetensors(f"{model_dir}/{spec['encoder']['weights']}").items()}
    head = {k: v.astype(np.float64) for k, v in load_safetensors(f"{model_dir}/{HEAD['weights']}").items()}
    assert not HEAD["hidden"], "the reference implements the linear head only"
    out = {"model": spec["name"], "head": head_name, "texts": [], "ids": [], "embeddings": [], "intensities": []}
    for text in TEXTS:
        ids = tokenize(text, vocab)
        pooled = encode(ids, W, cfg)
        x = pooled / np.linalg.norm(pooled) if HEAD["normalize"] else pooled
        logits = head["layers.0.weight"] @ x + head["layers.0.bias"]
        out["texts"].append(text)
        out["ids"].append(ids)
        out["embeddings"].append([round(float(v), 7) for v in pooled])
        out["intensities"].append([round(float(v), 7) for v in 1 / (1 + np.exp(-logits))])
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
