"""``python -m emoarc score FILE``: a thin alias of ``emoarc score`` for a machine with only the Python package.

It reads plain text (one utterance per line) or JSONL with a ``text`` field and an optional ``id``, skips
blank lines keeping line numbers as ids, and writes the CLI's JSONL records (built by the same Rust code).
The full command line (CSV output, --skip-bad, arcs, rewards, the server) is the ``emoarc`` binary.
"""

from __future__ import annotations

import argparse
import json
import sys


def _read(path: str) -> tuple[list[str], list[str]]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8-sig")
    with stream:
        lines = stream.read().splitlines()
    first = next((line for line in lines if line.strip()), "")
    jsonl = first.lstrip().startswith("{")
    texts, ids = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if jsonl:
            obj = json.loads(line)
            texts.append(obj["text"])
            ids.append(json.dumps(obj.get("id", number)))
        else:
            texts.append(line)
            ids.append(str(number))
    return texts, ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emoarc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="score utterances: one per line, or JSONL with a text field")
    score.add_argument("input", nargs="?", default="-", help="input file, or - for standard input")
    score.add_argument("-o", "--output", help="output file (standard output when absent)")
    score.add_argument("--top", type=int, default=3, help="top categories per utterance (at most 40)")
    score.add_argument("--model", help="model folder (default: the one in this package)")
    score.add_argument("--head", help="which head of the model to use")
    score.add_argument("--precision", default="auto", help="auto, f32, f16, bf16, int16 or int8 (the Estimator's backend)")
    score.add_argument("--device", default="auto", help="auto, cpu, cuda[:N] or metal[:N]")
    args = parser.parse_args(argv)

    from . import EmoarcError, Estimator

    try:
        texts, ids = _read(args.input)
        estimator = Estimator(args.model, args.head, args.precision, device=args.device)
        records = estimator.score_records(texts, ids=ids, top=args.top)
    except (EmoarcError, OSError, ValueError, KeyError) as e:
        print(f"emoarc: error: {e}", file=sys.stderr)
        return 1
    out = sys.stdout if args.output is None else open(args.output, "w", encoding="utf-8")
    with out:
        for record in records:
            out.write(record + "\n")
    print(f"utterances: {len(records)} scored", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
