"""Real comments labelled on the 40 categories at the corpus's levels: GoEmotions train comments, relabelled.

GoEmotions says which of its 27 emotions a comment shows, not how strongly, and says nothing about the 18 EmoNet
categories its map leaves out, so training learns presence from it and intensity only from our authored corpus,
whose style the model then reads best. This script samples GoEmotions *train* comments (never dev, never test) and
has them labelled the way every corpus line is labelled (`data/GUIDE.md`: the writer's emotions now, 0.25 / 0.5 /
0.75 / 1, absent left out), so that training sees real people's text with intensity levels on all 40 categories.

The labels are kept in `data/relabels/goemotions-train.jsonl` as `{"comment_id", "labels"}`: the comments
themselves stay in the dataset (`../shared/datasets`, not committed here), and `train.py` joins the two by
comment id (`--mix relabel=SHARE`).

    .venv-train/bin/python scripts/relabel.py tasks --out target/relabel     # blind task files, texts only
    # each labeller writes target/relabel/rows-K.answers.jsonl ({"key", "labels"} per task line) and checks it:
    .venv-train/bin/python scripts/label_agreement.py check target/relabel/rows-K.jsonl target/relabel/rows-K.answers.jsonl
    .venv-train/bin/python scripts/relabel.py collect --answers target/relabel
    # a later round extends the sample and labels only its new comments; collect keeps the file's labels:
    .venv-train/bin/python scripts/relabel.py --rows 7200 tasks --start 2400 --shards 16
    .venv-train/bin/python scripts/relabel.py --rows 7200 collect

A second labeller on the test split, blind as the first (README, "Relabelled real comments"):

    .venv-train/bin/python scripts/relabel.py second-tasks     # target/relabel/second-K.jsonl
    .venv-train/bin/python scripts/relabel.py second-collect   # data/agreement/second-labels-relabelled.jsonl
    .venv-train/bin/python scripts/relabel.py agreement        # second labeller and model against the first labels
"""

import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import label_agreement as A  # noqa: E402  (answer files and their checks)
import train as T  # noqa: E402  (the taxonomy order)

SEED = 20261206
FIRST_ROUND = 2400  # the first round's sample size: later rounds extend it (sample)
OUT = T.RELABELS
SECOND = os.path.join("agreement", "second-labels-relabelled.jsonl")


def sample(datasets, n):
    """A seeded sample of `n` train comments; comments labelled only neutral are kept with probability 1/2, so
    that about one in five is neutral-only (a third of GoEmotions is). The first 2,400 are the first round's
    sample; the rest follow in one seeded order of the remaining pool, so a larger `n` extends a smaller one
    (every comment already labelled keeps its key)."""
    rng = random.Random(SEED)
    neutral = str(T.GOEMOTIONS_LABELS.index("neutral"))
    pool = [r for r in T.goemotions_rows(datasets, "train") if r[1] != neutral or rng.random() < 0.5]
    first = rng.sample(pool, min(n, FIRST_ROUND))
    if n <= FIRST_ROUND:
        return first
    taken = {r[2] for r in first}
    rest = [r for r in pool if r[2] not in taken]
    random.Random(SEED + 1000).shuffle(rest)
    if n > len(first) + len(rest):
        raise SystemExit(f"--rows {n}: the pool holds {len(first) + len(rest)} comments")
    return first + rest[: n - len(first)]


def cmd_tasks(args):
    picked = sample(args.datasets, args.rows)
    os.makedirs(args.out, exist_ok=True)
    for k in range(args.shards):
        with open(os.path.join(args.out, f"rows-{args.start}-{k}.jsonl" if args.start else f"rows-{k}.jsonl"), "w", encoding="utf-8") as f:
            for i in range(args.start + k, len(picked), args.shards):
                f.write(json.dumps({"key": f"g{i:05d}", "text": picked[i][0]}, ensure_ascii=False) + "\n")
    print(f"{len(picked)} comments in {args.shards} files under {args.out}")


def cmd_collect(args):
    """Every sampled comment's labels into data/relabels: a comment answered in --answers takes that answer, one
    already in the file keeps its labels (so a later round needs only its own answers); neither stops the run."""
    picked = sample(args.datasets, args.rows)
    names = sorted(n for n in os.listdir(args.answers) if n.startswith("rows-") and n.endswith(".answers.jsonl"))
    answers = A.read_answers([os.path.join(args.answers, n) for n in names])
    path = os.path.join(args.data, OUT)
    held = {}
    if os.path.exists(path):
        held = {d["comment_id"]: d["labels"] for d in map(json.loads, open(path, encoding="utf-8"))}
    missing = [f"g{i:05d}" for i, r in enumerate(picked) if f"g{i:05d}" not in answers and r[2] not in held]
    if missing:
        raise SystemExit(f"{len(missing)} comments unanswered, e.g. {missing[:5]}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    answered = 0
    with open(path, "w", encoding="utf-8") as f:
        for i, (_text, _ids, cid) in enumerate(picked):
            key = f"g{i:05d}"
            answered += key in answers
            labels = A.labels_of(answers[key] if key in answers else {"labels": held[cid]}, key)
            f.write(json.dumps({"comment_id": cid, "labels": labels}, ensure_ascii=False) + "\n")
    print(f"wrote {len(picked)} relabelled comments to {path} ({answered} from answers)")


def second_sample(args):
    """The first round's test comments in a seeded random order, keyed s0000..: the second labeller's tasks (later
    rounds' test comments have one labeller)."""
    first = {T.relabel_ident(cid) for _text, _ids, cid in sample(args.datasets, FIRST_ROUND)}
    rows = [r for r in T.relabelled(args.data, args.datasets, "test") if r[0] in first]
    random.Random(SEED + 1).shuffle(rows)
    return [(f"s{i:04d}", r) for i, r in enumerate(rows)]


def cmd_second_tasks(args):
    tasks = second_sample(args)
    os.makedirs(args.out, exist_ok=True)
    for k in range(args.shards):
        with open(os.path.join(args.out, f"second-{k}.jsonl"), "w", encoding="utf-8") as f:
            for key, (_ident, text, _labels) in tasks[k::args.shards]:
                f.write(json.dumps({"key": key, "text": text}, ensure_ascii=False) + "\n")
    print(f"{len(tasks)} test-split comments in {args.shards} files under {args.out}")


def cmd_second_collect(args):
    tasks = second_sample(args)
    names = sorted(n for n in os.listdir(args.answers) if n.startswith("second-") and n.endswith(".answers.jsonl"))
    answers = A.read_answers([os.path.join(args.answers, n) for n in names])
    missing = [key for key, _ in tasks if key not in answers]
    if missing:
        raise SystemExit(f"{len(missing)} comments unanswered, e.g. {missing[:5]}")
    path = os.path.join(args.data, SECOND)
    with open(path, "w", encoding="utf-8") as f:
        for key, (ident, _text, _labels) in tasks:
            f.write(json.dumps({"id": ident, "labels": A.labels_of(answers[key], key)}, ensure_ascii=False) + "\n")
    print(f"wrote {len(tasks)} second labels to {path}")


def cmd_agreement(args):
    """The second labeller and the model against the first labels on the relabelled test comments the second
    labeller read (the first round's)."""
    second = {d["id"]: d["labels"] for d in map(json.loads, open(os.path.join(args.data, SECOND), encoding="utf-8"))}
    test = [r for r in T.relabelled(args.data, args.datasets, "test") if r[0] in second]
    dev = T.relabelled(args.data, args.datasets, "dev")
    ids = [r[0] for r in test]
    score = A.model_scorer(args.model)
    cuts = A.best_thresholds(score([r[1] for r in dev]), A.matrix({r[0]: r[2] for r in dev}, [r[0] for r in dev]))
    print(f"relabelled GoEmotions test split: {len(ids)} comments; first labels data/{OUT}, second data/{SECOND}")
    print(f"model: {args.model}, trained head in f32; presence F1 at cuts chosen on the relabelled dev split")
    A.print_comparison(score([r[1] for r in test]), A.matrix(second, ids), A.matrix({r[0]: r[2] for r in test}, ids),
                       cuts, args.resamples)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data")
    ap.add_argument("--datasets", default="../shared/datasets")
    ap.add_argument("--rows", type=int, default=2400)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tasks")
    t.add_argument("--out", default="target/relabel")
    t.add_argument("--shards", type=int, default=8)
    t.add_argument("--start", type=int, default=0, help="first comment to write (a later round: the rows already labelled)")
    c = sub.add_parser("collect")
    c.add_argument("--answers", default="target/relabel")
    s = sub.add_parser("second-tasks")
    s.add_argument("--out", default="target/relabel")
    s.add_argument("--shards", type=int, default=4)
    s = sub.add_parser("second-collect")
    s.add_argument("--answers", default="target/relabel")
    g = sub.add_parser("agreement")
    g.add_argument("--model", default="models/emoarc-minilm")
    g.add_argument("--resamples", type=int, default=1000)
    args = ap.parse_args()
    {"tasks": cmd_tasks, "collect": cmd_collect, "second-tasks": cmd_second_tasks, "second-collect": cmd_second_collect,
     "agreement": cmd_agreement}[args.cmd](args)


if __name__ == "__main__":
    main()
