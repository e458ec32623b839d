"""The HTTP client of `emoarc serve`, standard library only, for loops that call a shared reward server instead of
scoring in-process (OpenRLHF's remote reward model, several trainers sharing one model).

`EmoarcClient` wraps the endpoints; `make_reward_fn` turns it into the callable an RL loop wants: a batch of
conversations (lists of (role, text) turns) in, one float reward per conversation out. A 503 (the server's
queue is full) is retried after the server's Retry-After; any other error raises `ServerError` with the
server's message, which names the bad field. This file imports nothing from the rest of the package, so it can
also be loaded on its own (examples/python/reward_client.py does).
"""

import json
import time
import urllib.error
import urllib.request
import warnings

try:
    from ._conversations import SingleTurnWarning
except ImportError:  # loaded as a standalone file, outside the package

    class SingleTurnWarning(UserWarning):
        """The speaker has no turn after the last reply, so the reply cannot move the speaker's arc."""


class ServerError(RuntimeError):
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
                    raise ServerError(e.code, "http_error", body.decode("utf-8", "replace")) from None
                raise ServerError(e.code, err["code"], err["message"], err.get("field")) from None
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


def make_reward_fn(client, reward=None, speaker="user", simulator=None):
    """The reward function an RL loop calls once per batch of rollouts (lists of (role, text) turns).

    `reward` defaults to the server's (terminal: the speaker's final well-being). A rollout that ends with a
    reply the speaker never answers cannot show what the reply did: with `simulator` (messages -> the
    speaker's next text, for example an LLM call) the simulated speaker answers first; without one a
    SingleTurnWarning says so. Do not use an accommodation term alone on such rollouts: it then ranks a curt
    reply above a kind one."""

    def reward_fn(conversations):
        conversations = [list(turns) for turns in conversations]
        open_ended = [i for i, t in enumerate(conversations) if t and t[-1][0] != speaker]
        if simulator is not None:
            for i in open_ended:
                messages = [{"role": r, "content": x} for r, x in conversations[i]]
                conversations[i].append((speaker, str(simulator(messages))))
        elif open_ended:
            warnings.warn(
                f"{len(open_ended)} of {len(conversations)} rollouts end with a reply {speaker!r} never answers: "
                f"it cannot move {speaker!r}'s arc; pass simulator= or roll out multi-turn conversations",
                SingleTurnWarning, stacklevel=2)
        return [r["reward"] for r in client.rewards(conversations, reward=reward, speaker=speaker)]

    return reward_fn
