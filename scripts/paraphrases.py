"""Paraphrases of training lines: the same situation and levels in other words (data/GUIDE.md, "Paraphrases").

Stage 16 read the corpus's train split almost perfectly (presence AUC 0.991, Spearman given presence 0.919) and its
dev split far worse (0.926, 0.500): it had learned the wording of its ~8,000 training lines. A paraphrase keeps a
line's labels and changes its words, register and cues, so that the model has to learn the emotion instead.

Only train-split lines are paraphrased, and each paraphrase carries its source's group (the source's id for a line
without one), so it lands in the source's split: nothing of a training situation reaches dev or test.

    .venv-train/bin/python scripts/paraphrases.py tasks --out target/paraphrase   # task-K.jsonl and PROMPT.md
    # each writer (a helper agent) follows PROMPT.md for its K and writes out-K.jsonl; then:
    .venv-train/bin/python scripts/paraphrases.py collect --answers target/paraphrase
    ./target/release/emoarc data check   # refuses a paraphrase that repeats an evaluation text, or ties length to level
    # round 2: tasks --rest (same collect); then a longer plain wording of the no-emotion lines, so that the
    # rounds' mix of short plain and long emotional sources does not tie length to level:
    .venv-train/bin/python scripts/paraphrases.py tasks --long-plain --shards 6 --out target/long-plain
    .venv-train/bin/python scripts/paraphrases.py collect --answers target/long-plain --prefix plong
    # round 3: every train ladder told a third time, unlike its source and its first paraphrase
    .venv-train/bin/python scripts/paraphrases.py tasks --ladders-again --out target/ladders-again
    .venv-train/bin/python scripts/paraphrases.py collect --answers target/ladders-again --prefix par2
    # do the copied labels fit? a blind second labeller on a seeded sample (texts only), against them
    # (--prefix par2 for round 3's lines, written to data/agreement/second-labels-par2.jsonl):
    .venv-train/bin/python scripts/paraphrases.py label-tasks --out target/paraphrase-labels
    # each labeller answers {"key", "labels"} per task line (scripts/label_agreement.py check TASK ANSWERS), then
    .venv-train/bin/python scripts/paraphrases.py agreement --answers target/paraphrase-labels

`tasks` picks every train ladder whole and a seeded sample of the register files' train lines (stage 21: 2,620 and
1,400 lines in 8 files of about 500); `tasks --rest`, for a second round, the train lines outside the ladders that no
paraphrase covers yet (neighbour, closing and question sets whole; the five length-tied files left out; 3,056 lines
after stage 21); `collect` checks that every answer file has one paraphrase per task line in
order, drops a paraphrase that is empty or a near-duplicate of its source or of an evaluation text (intensity pairs,
neutral.txt; word-trigram overlap at or above emoarc's 0.6), copies the source's labels and group, reports the share of source words kept and length against
level, and adds them to data/corpus/real-paraphrases.jsonl (a line answered again replaces its earlier one).
"""

import argparse
import glob
import json
import os
import random
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T  # noqa: E402  (the split rule)

SEED = 21
REGISTER_FILES = ["negative-high", "negative-low", "physical-longing", "positive-high", "positive-low", "real-formal",
                  "real-reddit", "real-texting", "real-tweets", "real-traps"]
OUT_FILE = os.path.join("corpus", "real-paraphrases.jsonl")
NEAR_DUPLICATE = 0.6  # src/data.rs NEAR_DUPLICATE: a paraphrase this close to its source says nothing new
# src/data.rs LENGTH_TIED_FILES: written before the length rule, stronger lines longer
LENGTH_TIED_FILES = ("negative-high.jsonl", "negative-low.jsonl", "physical-longing.jsonl", "positive-high.jsonl",
                     "positive-low.jsonl")
SECOND_LABELS = os.path.join("agreement", "second-labels-paraphrases.jsonl")  # under --data, by paraphrase id

PROMPT = """You are writing training data for emoarc, a model that reads 40 emotion intensities (EmoNet taxonomy) from text.
The model has memorised the exact wording of its training lines; we want new wordings of the same lines so it
learns the emotions rather than the words. Your job: paraphrase every line of one task file.

Files (repository at @ROOT@; do not modify anything except your output file):
- Read first: @DATA@/GUIDE.md (the annotation guide: especially "Intensity scale", "Hard cases",
  "Habits" and "Ladders") and @DATA@/emonet-taxonomy.json (the 40 categories and their synonyms).
- Your input: @TASKS@/task-N.jsonl (N given below). Each line: {"id", "text", "labels",
  and for sets "group"}. Labels are intensities 0.25 / 0.5 / 0.75 / 1.0 of named categories; {} means no
  emotion at all.
- Your output: @TASKS@/out-N.jsonl, one JSON object per input line, same order:
  {"src": "<the input id>", "text": "<your paraphrase>"}.
- Do NOT open any other file under @DATA@ (no intensity-pairs, conversations, exchanges, agreement,
  relabels, corpus files): they hold evaluation data. Do not run git. Do not start heavy CPU jobs (a training
  run is using the machine); small python checks are fine.

How to paraphrase (the labels will be copied unchanged onto your line, so your line must deserve exactly them):
1. Same situation, same emotions, same intensity of each. A reader following GUIDE.md must give your line the
   source's labels: nothing stronger, nothing weaker, no extra emotion, none missing. A line labelled {} stays
   free of any emotion (plain facts, logistics, questions).
2. New wording: share as few words with the source as you can (aim for under a third of its words; keep only
   what the situation needs). Change names, places, objects and details that do not matter to the emotion.
3. Register: for about half the lines move to another register (tweet with hashtags, text message in lower case
   with typos, Reddit reply, forum post, work chat, formal email or complaint, spoken words, learner English);
   keep the rest in the source's register. Emoji may be used straight or ironically, as real people do, but only
   where they do not change the labels.
4. Swap the cues: where the source names its emotion ("I'm furious", "so grateful"), in about half of those
   lines show it instead (what the person does or says, their body, an idiom or figure of speech, what is at
   stake); where the source only shows it, you may name it. Never let naming change the strength: "a bit
   annoyed" stays 0.25 however plainly it is named, and a strong feeling shown without its name stays strong.
5. Length: within half to one and a half times the source's length; do not make strong lines longer or weak
   lines shorter as a rule.
6. Lines sharing a "group" tell one situation (a ladder: the same feeling at rising levels; a neighbour set:
   different emotions; a closing or question set: different endings or questions). Paraphrase the set as a whole:
   choose new details once and keep them across its lines, so the lines still differ only where their labels do.
7. Sarcasm, understatement, profanity in praise, formal restraint: keep them if the source has them (they are
   why the labels are what they are).

Work in batches (for example 50 lines at a time, appending to the output file), then check with a short python
script that the output has exactly one valid JSON line per input line, in order, with matching "src" ids and
non-empty texts, and that no text is a copy of its source. Fix anything that fails. When done, reply with the
number of lines written and three example pairs (source -> paraphrase).
"""

# --long-plain: a second, longer wording of lines with no emotion. Without it round 2 tied length to level across
# its sources (no-emotion lines ~95 characters, neighbour sets ~175: r = +0.354), and a reader that takes long text
# for feeling is the neutral false positive the issue counts.
LONG_PLAIN = """How to write (every input line is labelled {}: no emotion at all, and your line must stay so):
1. Same situation, a longer telling: 150 to 240 characters. Add plain detail (times, places, quantities, steps,
   who does what, what happens next), the way people write long messages, posts, notes, emails or instructions.
2. No emotion at all: no feeling words, no evaluation that implies one ("sadly", "finally", "annoyingly", "lovely"),
   no exclamation marks for effect, no emoji that signal a mood, no sarcasm. Greetings and thanks as routine
   politeness are fine once in a while, as in real logistics messages.
3. New wording: share as few words with the source as you can; change names, places and details freely.
4. Register: vary it (work chat, email, forum post, text message in lower case, tweet with a plain hashtag,
   instructions, a description, spoken words), as real long plain messages vary.
"""


# --ladders-again: a second paraphrase of each train ladder. The writer sees the first one too, so the third telling
# is new; and where the model fails (a strong feeling shown without its name read as weak, a mild one that names
# its emotion read as strong) is where the ladder's cues are worth moving.
LADDERS_AGAIN = """
Third telling of a ladder: every task line also has "first", the paraphrase an earlier writer made of it. Your line
must differ from both the source and "first": a new setting or new details for the whole ladder (same kind of
situation, same speaker's stance), and a register neither of them uses where that fits. In about half of your
ladders let the 0.75 and 1.0 rungs show the feeling without naming it, in a calm voice (no capitals, at most one
exclamation mark, no emoji): what the person can't stop doing, what it costs them, what they say they will do;
and let the 0.25 and 0.5 rungs name the emotion plainly with a hedge or in passing ("a bit jealous", "kind of
sad about it"). A strong feeling does not need shouting, and a named feeling is not a strong one.
"""


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def first_round_units(data, n_singles):
    """Stage 21's selection: every train ladder whole, and a seeded sample of the register files' train lines."""
    ladders, singles = {}, []
    for e in read_jsonl(os.path.join(data, "corpus", "real-ladders.jsonl")):
        if T.split_of(e["group"]) == "train":
            ladders.setdefault(e["group"], []).append(e)
    for name in REGISTER_FILES:
        for e in read_jsonl(os.path.join(data, "corpus", name + ".jsonl")):
            if T.split_of(e.get("group") or e["id"]) == "train":
                singles.append(e)
    rng = random.Random(SEED)
    singles = rng.sample(singles, min(n_singles, len(singles)))
    return [v for _, v in sorted(ladders.items())] + [[e] for e in singles], rng


def paraphrased(data):
    """The first paraphrase (`par-`; `plong-` and `par2-` lines are further wordings) of each line that has one, by
    the source's id."""
    return {r["id"][len("par-"):]: r["text"] for r in read_jsonl(os.path.join(data, OUT_FILE))
            if r["id"].startswith("par-")}


def lines_outside_ladders(data):
    """The corpus lines, file by file in name order, of every file but the ladders, the paraphrases and the
    length-tied files. A paraphrase keeps its source's length within a factor of 1.5, so paraphrases of a
    length-tied file inherit its tie (r 0.43 to 0.74 each in round 2's first draft, which took the paraphrase
    file to r = +0.238, over the 0.2 limit)."""
    skip = ("real-ladders.jsonl", os.path.basename(OUT_FILE), *LENGTH_TIED_FILES)
    for path in sorted(glob.glob(os.path.join(data, "corpus", "*.jsonl"))):
        if os.path.basename(path) not in skip:
            yield from read_jsonl(path)


def rest_units(data):
    """The train lines no paraphrase covers yet, outside the ladders and the length-tied files (neighbour, closing
    and question sets whole, the other register and neutral lines), for a second round."""
    done = paraphrased(data)
    sets, singles = {}, []
    for e in lines_outside_ladders(data):
        if T.split_of(e.get("group") or e["id"]) != "train" or e["id"] in done:
            continue
        if e.get("group"):
            sets.setdefault(e["group"], []).append(e)
        else:
            singles.append(e)
    return [v for _, v in sorted(sets.items())] + [[e] for e in singles], random.Random(SEED + 1)


def long_plain_units(data):
    """Train lines labelled {} that already have a paraphrase, outside the ladders and the length-tied files: each
    gets a second, longer wording (LONG_PLAIN)."""
    done = paraphrased(data)
    return [[e] for e in lines_outside_ladders(data) if e["id"] in done and not e["labels"]], random.Random(SEED + 2)


def ladders_again_units(data):
    """Every train ladder whole once more, each line with its first paraphrase (`first`), which the new wording must
    not repeat: round 1 told each ladder once, and the ladders are where intensity is ordered."""
    first = paraphrased(data)
    units, _ = first_round_units(data, 0)
    for unit in units:
        for e in unit:
            if e["id"] in first:
                e["first"] = first[e["id"]]
    return units, random.Random(SEED + 3)


def tasks(args):
    """Task files: whole groups and single lines, shuffled in units, dealt into --shards files."""
    if args.ladders_again:
        units, rng = ladders_again_units(args.data)
    elif args.long_plain:
        units, rng = long_plain_units(args.data)
    else:
        units, rng = rest_units(args.data) if args.rest else first_round_units(args.data, args.singles)
    rng.shuffle(units)
    shards = [[] for _ in range(args.shards)]
    for unit in units:  # a ladder stays in one file, so one writer gives it one new set of details
        min(shards, key=len).extend(unit)
    os.makedirs(args.out, exist_ok=True)
    for k, shard in enumerate(shards, 1):
        with open(os.path.join(args.out, f"task-{k}.jsonl"), "w", encoding="utf-8") as f:
            for e in shard:
                f.write(json.dumps({key: e[key] for key in ("id", "group", "text", "labels", "first") if key in e},
                                   ensure_ascii=False) + "\n")
    root = os.path.abspath(".")
    with open(os.path.join(args.out, "PROMPT.md"), "w", encoding="utf-8") as f:
        prompt = PROMPT
        if args.long_plain:
            prompt = PROMPT[:PROMPT.index("How to paraphrase")] + LONG_PLAIN + PROMPT[PROMPT.index("\nWork in"):]
        elif args.ladders_again:
            prompt = PROMPT.replace("\nWork in", LADDERS_AGAIN + "\nWork in")
        f.write(prompt.replace("@ROOT@", root).replace("@DATA@", os.path.abspath(args.data))
                .replace("@TASKS@", os.path.abspath(args.out)))
    grouped = sum(len(u) for u in units if len(u) > 1 or u[0].get("group"))
    print(f"{sum(map(len, shards))} lines ({grouped} in whole groups, {len(units) - sum(len(u) > 1 for u in units)} "
          f"units of one line) in {len(shards)} task files under {args.out}, with PROMPT.md")


def words(text):
    return [w for w in re.split(r"[\W_]+", text.lower()) if w]


def shingles(text):
    w = words(text)
    return set(w) if len(w) < 3 else {" ".join(w[i:i + 3]) for i in range(len(w) - 2)}


def held_out_shingles(data):
    """The evaluation texts emoarc data check keeps out of the corpus (intensity pairs, neutral.txt), as shingles."""
    texts = [p[k] for p in read_jsonl(os.path.join(data, "intensity-pairs.jsonl")) for k in ("weaker", "stronger")]
    with open(os.path.join(data, "neutral.txt"), encoding="utf-8") as f:
        texts += [line.strip() for line in f if line.strip()]
    return [shingles(t) for t in texts]


def jaccard(a, b):
    return len(a & b) / max(1, len(a | b))


def pearson(x, y):
    """Pearson r as text; "n/a" where one side is constant (every line of a --long-plain round is at level 0)."""
    return f"{np.corrcoef(x, y)[0, 1]:+.3f}" if np.std(x) > 0 and np.std(y) > 0 else "n/a"


def collect(args):
    out, dropped, held, kept_share = [], 0, 0, []
    evaluation = held_out_shingles(args.data)
    k = 1
    while os.path.exists(os.path.join(args.answers, f"task-{k}.jsonl")):
        task = read_jsonl(os.path.join(args.answers, f"task-{k}.jsonl"))
        path = os.path.join(args.answers, f"out-{k}.jsonl")
        if not os.path.exists(path):
            sys.exit(f"{path}: missing (every task file needs its answers)")
        answers = read_jsonl(path)
        if [a.get("src") for a in answers] != [t["id"] for t in task]:
            sys.exit(f"{path}: {len(answers)} answers, not one per task line in order ({len(task)})")
        for t, a in zip(task, answers):
            text = str(a.get("text", "")).strip()
            a_sh = shingles(text)
            # a copy of the source, or (round 3) of the first paraphrase the writer was shown, says nothing new
            if not text or any(jaccard(a_sh, shingles(t[key])) >= NEAR_DUPLICATE
                               for key in ("text", "first") if key in t):
                dropped += 1
                continue
            if any(jaccard(a_sh, e) >= NEAR_DUPLICATE for e in evaluation):
                held += 1  # a writer can happen on an evaluation text (a plain fact, a stock phrase)
                continue
            src_words = set(words(t["text"]))
            kept_share.append(len(src_words & set(words(text))) / max(1, len(src_words)))
            out.append({"id": args.prefix + "-" + t["id"], "group": t.get("group") or t["id"], "text": text,
                        "labels": t["labels"], "_source": t["text"]})
        k += 1
    if not out:
        sys.exit(f"no task files under {args.answers}")
    length = np.array([len(x["text"]) for x in out], dtype=float)
    level = np.array([max(x["labels"].values(), default=0.0) for x in out], dtype=float)
    source = np.array([len(x["_source"]) for x in out], dtype=float)
    path = os.path.join(args.data, OUT_FILE)
    # A later round adds to the file: lines of earlier rounds stay where they are (replaced if answered again).
    new = {x["id"]: x for x in out}
    earlier = read_jsonl(path) if os.path.exists(path) else []
    merged = [new.pop(r["id"], r) for r in earlier] + list(new.values())
    with open(path, "w", encoding="utf-8") as f:
        for x in merged:
            f.write(json.dumps({key: x[key] for key in ("id", "group", "text", "labels")}, ensure_ascii=False,
                               separators=(",", ":")) + "\n")
    print(f"{len(out)} paraphrases from {k - 1} task files ({dropped} dropped: empty or near-duplicates of "
          f"their source; {held} near-duplicates of an evaluation text), "
          f"{len(merged)} in {path}; source words kept {np.mean(kept_share):.2f} on average; length against level "
          f"r = {pearson(length, level)} (sources {pearson(source, level)}); "
          f"median length ratio {np.median(length / source):.2f}")


def label_tasks(args):
    """A seeded sample of one round's paraphrases (ids `--prefix`-...) as blind labelling tasks: a key and the text,
    in a random order. The sample is drawn from the file as it stands (stage 21's: its 4,020 lines; a later round
    changes the draw)."""
    rows = [r for r in read_jsonl(os.path.join(args.data, OUT_FILE)) if r["id"].startswith(args.prefix + "-")]
    picked = random.Random(SEED).sample(rows, args.rows)
    os.makedirs(args.out, exist_ok=True)
    for k in range(args.shards):
        with open(os.path.join(args.out, f"rows-{k}.jsonl"), "w", encoding="utf-8") as f:
            for i in range(k, len(picked), args.shards):
                f.write(json.dumps({"key": f"p{i:04d}", "text": picked[i]["text"]}, ensure_ascii=False) + "\n")
    with open(os.path.join(args.out, "keys.json"), "w", encoding="utf-8") as f:
        json.dump({f"p{i:04d}": r["id"] for i, r in enumerate(picked)}, f)
    print(f"{len(picked)} paraphrases in {args.shards} task files under {args.out} (keys.json maps keys to ids)")


def agreement_figures(first, second):
    """Micro agreement of two labellings over the same rows (dicts category -> level): presence F1 (present =
    any level), Spearman and mean absolute difference over the cells the first labelling marks present (the
    second's level there, 0 if absent), and the share of rows whose strongest category is the same."""
    from intensity_factor_probe import ranks  # Spearman's ranks, ties averaged (scipy is not a training requirement)
    tp = fp = fn = 0
    a, b, same_top = [], [], []
    for f, s in zip(first, second):
        tp += len(f.keys() & s.keys()); fp += len(s.keys() - f.keys()); fn += len(f.keys() - s.keys())
        for c in f:
            a.append(f[c]); b.append(s.get(c, 0.0))
        if f and s:
            same_top.append(max(f, key=f.get) == max(s, key=s.get))
    return {"rows": len(first), "presence_f1": 2 * tp / max(1, 2 * tp + fp + fn),
            "spearman_present": float(np.corrcoef(ranks(np.array(a)), ranks(np.array(b)))[0, 1]),
            "mean_abs_present": float(np.mean(np.abs(np.subtract(a, b)))),
            "same_strongest": float(np.mean(same_top))}


def agreement(args):
    """Collects the answers into data/agreement/ and compares them with the copied labels, beside the second
    labeller's agreement with the first labels on the own test split (data/agreement/second-labels.jsonl)."""
    keys = json.load(open(os.path.join(args.answers, "keys.json"), encoding="utf-8"))
    answers = {}
    for path in sorted(glob.glob(os.path.join(args.answers, "rows-*.answers.jsonl"))):
        for d in read_jsonl(path):
            if d["key"] not in keys or d["key"] in answers or T.label_problem(d["labels"]):
                sys.exit(f"{path}: {d['key']}: unknown, answered twice, or {T.label_problem(d['labels'])}")
            answers[d["key"]] = d["labels"]
    missing = sorted(set(keys) - set(answers))
    if missing:
        sys.exit(f"{len(missing)} keys not answered, for example {missing[:3]}")
    out = os.path.join(args.data, SECOND_LABELS if args.prefix == "par" else
                       os.path.join("agreement", f"second-labels-{args.prefix}.jsonl"))
    with open(out, "w", encoding="utf-8") as f:
        for key in sorted(keys):
            f.write(json.dumps({"id": keys[key], "labels": answers[key]}, ensure_ascii=False) + "\n")
    copied = {r["id"]: r["labels"] for r in read_jsonl(os.path.join(args.data, OUT_FILE))}
    ids = [keys[k] for k in sorted(keys)]
    para = agreement_figures([copied[i] for i in ids], [answers[k] for k in sorted(keys)])
    first = {}
    for path in glob.glob(os.path.join(args.data, "corpus", "*.jsonl")):
        for r in read_jsonl(path):
            first[r["id"]] = r["labels"]
    test = read_jsonl(os.path.join(args.data, "agreement", "second-labels.jsonl"))
    own = agreement_figures([first[r["id"]] for r in test], [r["labels"] for r in test])
    print(f"wrote {out}")
    print("| second labeller against | rows | presence F1 (micro) | Spearman, first's present cells | "
          "mean |difference| there | same strongest category |")
    print("|---|---|---|---|---|---|")
    for name, f in (("the labels copied onto paraphrases", para), ("the first labels of own test lines", own)):
        print(f"| {name} | {f['rows']} | {f['presence_f1']:.3f} | {f['spearman_present']:.3f} | "
              f"{f['mean_abs_present']:.3f} | {f['same_strongest']:.1%} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tasks", help="write the task files and the writers' prompt")
    t.add_argument("--out", default="target/paraphrase")
    t.add_argument("--shards", type=int, default=8)
    t.add_argument("--singles", type=int, default=1400, help="register-file lines to sample (ladders go whole)")
    t.add_argument("--rest", action="store_true",
                   help="second round: the train lines outside the ladders that no paraphrase covers yet")
    t.add_argument("--long-plain", action="store_true",
                   help="a second, longer wording (150-240 characters) of the paraphrased lines with no emotion")
    t.add_argument("--ladders-again", action="store_true",
                   help="third round: every train ladder told again, unlike its source and its first paraphrase")
    c = sub.add_parser("collect", help="check the answers and add them to data/corpus/real-paraphrases.jsonl")
    c.add_argument("--answers", default="target/paraphrase")
    c.add_argument("--prefix", default="par",
                   help="id prefix: par (paraphrases), plong (tasks --long-plain), par2 (tasks --ladders-again)")
    lt = sub.add_parser("label-tasks", help="blind labelling tasks for a seeded sample of paraphrases")
    lt.add_argument("--out", default="target/paraphrase-labels")
    lt.add_argument("--rows", type=int, default=200)
    lt.add_argument("--shards", type=int, default=2)
    lt.add_argument("--prefix", default="par", help="sample the paraphrases of this round (par, par2, plong)")
    ag = sub.add_parser("agreement", help="collect the second labels and compare them with the copied labels")
    ag.add_argument("--answers", default="target/paraphrase-labels")
    ag.add_argument("--prefix", default="par", help="the round label-tasks sampled (par writes "
                    "second-labels-paraphrases.jsonl, another round second-labels-PREFIX.jsonl)")
    args = ap.parse_args()
    {"tasks": tasks, "collect": collect, "label-tasks": label_tasks, "agreement": agreement}[args.cmd](args)


if __name__ == "__main__":
    main()
