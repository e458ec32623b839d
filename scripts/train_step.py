#!/usr/bin/env python3
"""The step of examples/train_step.rs in PyTorch: 3 BERT layers (scripts/train.py's) forward and backward."""
import json
import sys
import time

import torch

sys.path.insert(0, "scripts")
from train import Layer, Model, load_encoder_file  # noqa: E402

batch, tokens, steps = (int(a) for a in (sys.argv[1:4] if len(sys.argv) > 3 else (32, 32, 20)))
torch.set_num_threads(2)
model = Model(json.load(open("models/emoarc-minilm/config.json")), 3, 256)
model.load_encoder(load_encoder_file("models/emoarc-minilm/encoder.safetensors"))
x = torch.randn(batch, tokens, 384)
bias = torch.zeros(batch, 1, 1, tokens)


def run():
    h = x
    for layer in model.layers:
        h = layer(h, bias, 0.0)
    (h ** 2).mean().backward()


run()
start = time.time()
for _ in range(steps):
    run()
print(f"torch: {batch} x {tokens} tokens, 3 layers forward+backward: {(time.time() - start) / steps * 1e3:.1f} ms/step")
