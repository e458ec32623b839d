"""The estimator, arcs, rewards and the tracker from Python, against the `emoarc` command line on the same
inputs: the same numbers and the same output fields."""

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import emoarc


def round4(x):
    """The CLI's rounding: (f64(v) * 1e4).round() / 1e4, half away from zero."""
    y = np.asarray(x, dtype=np.float64) * 1e4
    return np.sign(y) * np.floor(np.abs(y) + 0.5) / 1e4


def test_shape_dtype_and_categories(estimator):
    out = estimator.score(["I am furious"])
    assert out.shape == (1, 40) and out.dtype == np.float32
    assert len(emoarc.CATEGORIES) == 40 and emoarc.CATEGORIES[0] == "Amusement"
    row = estimator.score_dicts(["I am furious"])[0]
    assert list(row) == emoarc.CATEGORIES
    assert emoarc.CATEGORIES[int(out[0].argmax())] == max(row, key=row.get)
    assert estimator.embed(["a", "b c"]).shape == (2, 384)


def test_scores_equal_the_cli(estimator, cli, root):
    path = root / "examples" / "utterances.txt"
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    cli_rows = [json.loads(line) for line in cli("score", path, "--precision", "auto").splitlines()]
    py = estimator.score(lines)
    for row, record in zip(py, cli_rows):
        expected = np.array([record["intensities"][c] for c in emoarc.CATEGORIES])
        assert np.abs(round4(row) - expected).max() <= 1e-6
    # The records themselves are built by the same Rust code: byte for byte the CLI's lines.
    assert estimator.score_records(lines) == cli("score", path).splitlines()


def test_python_m_emoarc_score_is_the_cli(cli, root, tmp_path):
    path = root / "examples" / "utterances.txt"
    out = subprocess.run([sys.executable, "-m", "emoarc", "score", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == cli("score", path)


def test_errors_are_typed_with_the_library_message(estimator, tmp_path):
    with pytest.raises(emoarc.InputError, match=r"^input 1: empty or whitespace-only text$") as e:
        estimator.score(["fine", "   "])
    assert e.value.index == 1 and "empty" in e.value.problem
    assert issubclass(emoarc.InputError, emoarc.EmoarcError)
    with pytest.raises(emoarc.ModelError, match="model file missing"):
        emoarc.Estimator(tmp_path / "nowhere")
    with pytest.raises(emoarc.ConfigError, match="precision must be"):
        emoarc.Estimator(backend="int3")
    with pytest.raises(emoarc.ConfigError, match="reward"):
        emoarc.reward(estimator, [[("user", "hi"), ("user", "ok")]], reward="nonsense")
    with pytest.raises(TypeError):
        estimator.score("a string is not a list of texts")


def test_arc_and_reward_records_equal_the_cli(estimator, cli, root):
    path = root / "examples" / "conversations.jsonl"
    convs = [json.loads(line) for line in path.read_text().splitlines()]
    assert emoarc.arc(estimator, convs) == [json.loads(line) for line in cli("arc", path).splitlines()]
    config = root / "examples" / "reward.toml"
    assert emoarc.reward(estimator, convs, config=config) == [
        json.loads(line) for line in cli("reward", path, "--config", config).splitlines()]
    assert emoarc.reward(estimator, convs, reward="trend") == [
        json.loads(line) for line in cli("reward", path, "--reward", "trend").splitlines()]
    # Left out, reading and affect are the library's defaults (as the CLI's are); given, they are the CLI's flags.
    assert emoarc.arc(estimator, convs, reading="clauses", affect="learned") == [
        json.loads(line) for line in cli("arc", path, "--reading", "clauses", "--affect", "learned").splitlines()]
    assert emoarc.arc(estimator, convs, reading="clauses") != emoarc.arc(estimator, convs)
    # context: the CLI's --context; "alone" reads a user's turn without the reply before it.
    assert emoarc.arc(estimator, convs, context="alone") == [
        json.loads(line) for line in cli("arc", path, "--context", "alone").splitlines()]
    assert emoarc.arc(estimator, convs, context="alone") != emoarc.arc(estimator, convs)
    with pytest.raises(emoarc.ConfigError):
        emoarc.arc(estimator, convs, context="sideways")
    with pytest.raises(emoarc.ConfigError, match="affect"):
        emoarc.arc(estimator, convs, affect="both")


def test_tracker_matches_the_batch_reward(estimator):
    turns = [("user", "i failed my exam and i feel useless"), ("assistant", "That sounds rough. What happened?"),
             ("user", "i ran out of time. but i know what to fix now, thanks")]
    tracker = emoarc.ArcTracker(estimator, reward="terminal=1,delta=1")
    assert tracker.reward() is None
    for role, text in turns:
        tracker.push(role, text)
    whole = emoarc.reward(estimator, [turns], reward="terminal=1,delta=1", rounded=False)[0]
    assert abs(tracker.reward() - whole["reward"]) <= 1e-6
    assert tracker.record()["terms"].keys() == whole["terms"].keys()
    tracker.push("assistant", "Glad to hear it.")
    with pytest.warns(emoarc.SingleTurnWarning):
        tracker.reward()


def test_a_bad_conversation_raises_or_is_skipped(estimator):
    convs = [[("user", "hello there"), ("assistant", "hi")], [("assistant", "only me")]]
    with pytest.raises(emoarc.ConversationError, match="no turn by speaker"):
        emoarc.reward(estimator, convs)
    records = emoarc.reward(estimator, convs, skip_bad=True)
    assert "reward" in records[0] and "no turn by speaker" in records[1]["error"]


def test_single_turn_warns_and_a_simulator_fixes_it(estimator):
    kind = [("user", "my dog died yesterday"), ("assistant", "I am so sorry. Do you want to talk about her?")]
    rude = [("user", "my dog died yesterday"), ("assistant", "LOL who cares, get a new one")]
    with pytest.warns(emoarc.SingleTurnWarning, match="simulator"):
        same = emoarc.reward(estimator, [kind, rude])
    assert same[0]["reward"] == same[1]["reward"]  # the reply cannot move the user's arc
    with warnings_as_errors():
        fixed = emoarc.reward(estimator, [kind, rude], simulator=_user)
    assert fixed[0]["reward"] > fixed[1]["reward"]


def test_the_gil_is_released_while_rust_scores(estimator):
    texts = [f"sentence number {i} about how I feel today, honestly rather anxious" for i in range(600)]
    done = threading.Event()
    thread = threading.Thread(target=lambda: (estimator.score(texts), done.set()))
    thread.start()
    ticks = 0
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    thread.join()
    # With the GIL held for the whole call, this loop could not run until the call returned.
    assert ticks > 20


def _user(messages):
    """A small deterministic user simulator: warmed by sympathy, hurt by mockery."""
    last = messages[-1]["content"].lower()
    if "sorry" in last or "talk" in last:
        return "thank you, that means a lot. she was my best friend and talking helps"
    return "wow. that is cruel. now i feel even worse and completely alone"


class warnings_as_errors:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error", emoarc.SingleTurnWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
