#!/usr/bin/env bash
# Builds the emoarc wheel, installs it in a fresh virtual environment (no Rust toolchain used from there on)
# and runs the Python tests against it, comparing with the `emoarc` binary in target/release. Run from the
# repository root after `cargo build --release` (as .ci/run does). WORK (default: a temporary folder) holds
# the venvs and the wheel.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${WORK:-$(mktemp -d)}"

python3 -m venv "$work/build"
"$work/build/bin/pip" install -q -r "$root/python/requirements-build.txt"
# Same target folder as the crate, so the emoarc library's dependencies are not compiled twice.
(cd "$root/python" && CARGO_TARGET_DIR="$root/target" "$work/build/bin/maturin" build --release --locked -o "$work/wheels")

python3 -m venv "$work/test"
"$work/test/bin/pip" install -q "$work"/wheels/emoarc-*.whl -r "$root/python/requirements-test.txt"
# A reused WORK already has emoarc 0.1.0 installed, and pip keeps an installed version it sees again: replace it,
# or the tests would run the wheel (and the model inside it) of an earlier build.
"$work/test/bin/pip" install -q --force-reinstall --no-deps "$work"/wheels/emoarc-*.whl
# From an empty folder, so the installed wheel (and the model inside it) is what is imported and found.
mkdir -p "$work/run"
cd "$work/run"
"$work/test/bin/python" -c "import emoarc; print(emoarc.Estimator().score(['I am furious']).shape)"
EMOARC_BIN="$root/target/release/emoarc" "$work/test/bin/python" -m pytest -q -p no:cacheprovider "$root/python/tests"
