#!/usr/bin/env python3
"""A reward function for a Python RL loop, backed by `emoarc serve`. Standard library only.

Start the server (`emoarc serve`), then:

    python3 examples/python/reward_client.py --url http://127.0.0.1:8080

`EmoarcClient` wraps the endpoints; `make_reward_fn` turns it into the callable an RL loop wants:
a batch of conversations (lists of (role, text) turns) in, one float reward per conversation out.
A 503 (the server's queue is full) is retried after the server's Retry-After; any other error raises
with the server's message, which names the bad field.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request


class EmoarcError(RuntimeError):
    """An error answer from the server: HTTP status, stable code, message and the field to blame."""

    def __init__(self, status, code, message, field=None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.field = status, code, field


class EmoarcClient:
    def __init__(self, url="http://127.0.0.1:8080", api_key=None, timeout=60.0, retries=5):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries

    def _call(self, method, path, payload=None):
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as e:
                body = e.read()
                # The queue is full: wait as the server asks, then try again (a bounded number of times).
                if e.code == 503 and attempt < self.retries:
                    time.sleep(float(e.headers.get("Retry-After", "1")))
                    continue
                try:
                    err = json.loads(body)["error"]
                except (ValueError, KeyError, TypeError):
                    raise EmoarcError(e.code, "http_error", body.decode("utf-8", "replace")) from None
                raise EmoarcError(e.code, err["code"], err["message"], err.get("field")) from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def health(self):
        return self._call("GET", "/health")

    def score(self, texts, top=3):
        """40 intensities and the `top` strongest categories per text."""
        return self._call("POST", "/v1/score", {"texts": list(texts), "top": top})["results"]

    def rewards(self, conversations, reward=None, speaker=None):
        """One result per conversation: reward, each term's value and the speaker's emotion arc.

        `conversations` is a list of lists of (role, text) pairs; `reward` a term or weighted sum such as
        "terminal=1,accommodation=0.5" (default: the server's)."""
        payload = {
            "conversations": [
                {"id": str(i), "turns": [{"role": role, "text": text} for role, text in turns]}
                for i, turns in enumerate(conversations)
            ]
        }
        if reward is not None:
            payload["reward"] = reward
        if speaker is not None:
            payload["speaker"] = speaker
        return self._call("POST", "/v1/reward", payload)["results"]

    def get_reward(self, queries, prompts=None):
        """OpenRLHF's remote reward protocol: rendered prompt+response strings in, rewards out."""
        payload = {"query": list(queries)}
        if prompts is not None:
            payload["prompts"] = list(prompts)
        return self._call("POST", "/get_reward", payload)


def make_reward_fn(client, reward="terminal=1,accommodation=0.5"):
    """The reward function an RL loop calls once per batch of finished rollouts."""

    def reward_fn(conversations):
        return [r["reward"] for r in client.rewards(conversations, reward=reward)]

    return reward_fn


# Two rollouts of the same opening: the first reply helps and the user ends better off, the second only
# soothes and the user ends where they began.
DEMO_ROLLOUTS = [
    [
        ("user", "i failed my driving test again. i feel so stupid and hopeless"),
        ("assistant", "That is hard. What did the examiner mark you down on? It is usually one fixable thing."),
        ("user", "roundabouts. ok that actually makes sense, thank you, i feel much better now"),
    ],
    [
        ("user", "i failed my driving test again. i feel so stupid and hopeless"),
        ("assistant", "Aww, don't worry! Everything happens for a reason! Stay positive!"),
        ("user", "that doesn't help. i still feel stupid and hopeless"),
    ],
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--api-key-file", help="file holding the server's bearer token")
    args = parser.parse_args(argv)
    api_key = None
    if args.api_key_file:
        with open(args.api_key_file, encoding="utf-8") as f:
            api_key = f.read().strip()
    client = EmoarcClient(args.url, api_key=api_key)

    print("health:", client.health(), file=sys.stderr)
    reward_fn = make_reward_fn(client)
    rewards = reward_fn(DEMO_ROLLOUTS)
    for turns, r in zip(DEMO_ROLLOUTS, rewards):
        print(f"reward {r:+.3f}  last user turn: {turns[-1][1]!r}", file=sys.stderr)

    scored = client.score(["I am absolutely furious", "thank you, that really helped"], top=2)
    top = [result["top"][0][0] for result in scored]

    chatml = "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in DEMO_ROLLOUTS[0])
    plain_prompt = DEMO_ROLLOUTS[1][0][1]
    openrlhf = client.get_reward([chatml, plain_prompt + " " + DEMO_ROLLOUTS[1][1][1]], prompts=["", plain_prompt])

    # The last line is one JSON object, for scripts (and the test that runs this file).
    print(json.dumps({"rewards": rewards, "top": top, "openrlhf": openrlhf["rewards"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
