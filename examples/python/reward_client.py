#!/usr/bin/env python3
"""A demo of the `emoarc serve` client for Python RL loops: two rollouts, scores and OpenRLHF's protocol.

Start the server (`emoarc serve`), then:

    python3 examples/python/reward_client.py --url http://127.0.0.1:8080

The client itself is `emoarc.client` in the Python package (python/emoarc/client.py); this script loads that
file directly so it runs with the standard library alone, without installing the package. In a training loop,
roll out multi-turn conversations, or give `make_reward_fn` a `simulator` so a simulated user answers each
reply: a reply nobody answers cannot move the user's arc.
"""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

_CLIENT = Path(__file__).resolve().parents[2] / "python" / "emoarc" / "client.py"
_spec = importlib.util.spec_from_file_location("emoarc_client", _CLIENT)
client_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(client_module)
EmoarcClient, make_reward_fn = client_module.EmoarcClient, client_module.make_reward_fn


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
