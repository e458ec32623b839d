"""Shared fixtures: one real Estimator (the shipped model) per test session, the repository root, and the
`emoarc` binary the Python numbers are compared with."""

import os
import subprocess
from pathlib import Path

import pytest

import emoarc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def estimator():
    return emoarc.Estimator()


@pytest.fixture(scope="session")
def cli():
    """Runs the `emoarc` binary (EMOARC_BIN, else target/release/emoarc of this checkout)."""
    binary = Path(os.environ.get("EMOARC_BIN", ROOT / "target" / "release" / "emoarc"))
    if not binary.is_file():
        if "EMOARC_BIN" in os.environ:
            pytest.fail(f"EMOARC_BIN={binary} does not exist")
        pytest.skip(f"no emoarc binary at {binary}: build it (cargo build --release) or set EMOARC_BIN")

    def run(*args, stdin=None):
        out = subprocess.run([str(binary), *map(str, args)], input=stdin, capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stderr
        return out.stdout

    return run


@pytest.fixture(scope="session")
def root():
    return ROOT
