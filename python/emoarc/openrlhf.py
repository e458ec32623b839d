"""OpenRLHF adapters: an in-process reward function, and the remote reward model.

**In-process.** OpenRLHF loads a Python file given as ``--remote_rm_url reward_func.py`` and calls its
``reward_func(queries, prompts, labels)`` once per batch: ``queries`` are the chat-templated prompt plus
response, ``prompts`` the templated prompts, ``labels`` the ``--label_key`` column. It wants a dict with
``rewards`` (used for advantages), ``scores`` and ``extra_logs``. A file containing
``from emoarc.openrlhf import reward_func`` is enough; ``make_reward_func(simulator=...)`` builds one with a
simulated user (RLVER's setup). ChatML and Llama 3 templates are parsed into turns; other prompts count as one
user turn. A query that cannot be split into prompt and response gets the fallback value.

**Remote.** ``emoarc serve`` answers OpenRLHF's ``/get_reward`` directly (``--remote_rm_url
http://HOST:PORT/get_reward``); :mod:`emoarc.client` is its Python client.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

from ._conversations import normalize
from ._rollouts import RewardOptions, Simulator

_CHATML = re.compile(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>", re.S)
_LLAMA3 = re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.S)
_END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>", "<|end_of_text|>")


def parse_prompt(prompt: str, speaker: str = "user") -> list[tuple[str, str]]:
    """The turns of a chat-templated prompt (ChatML or Llama 3); any other prompt is one ``speaker`` turn."""
    for pattern in (_CHATML, _LLAMA3):
        turns = [(role, text.strip()) for role, text in pattern.findall(prompt)]
        if turns:
            return turns
    return [(speaker, prompt.strip())]


def split_query(query: str, prompt: str) -> Optional[str]:
    """The response part of ``query`` (``prompt`` + response + end token), or ``None`` when ``query`` does not
    start with ``prompt``."""
    if not query.startswith(prompt):
        return None
    response = query[len(prompt):]
    for token in _END_TOKENS:
        response = response.replace(token, "")
    return response.strip()


def _tensor(values: list[float]) -> Any:
    """A torch tensor when torch is there (what OpenRLHF expects); a list otherwise (tests, other loops)."""
    try:
        import torch
    except ImportError:
        return values
    return torch.tensor(values, dtype=torch.float32)


def make_reward_func(estimator=None, *, reward: Optional[str] = None, config: Optional[str] = None,
                     speaker: str = "user", simulator: Optional[Simulator] = None, fallback: float = 0.0):
    """An OpenRLHF ``reward_func(queries, prompts, labels)``."""
    options = RewardOptions(estimator=estimator, reward=reward, config=config, speaker=speaker,
                            simulator=simulator, fallback=None)

    def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any] = (), **kwargs: Any
                    ) -> dict[str, Any]:
        slots: list[Optional[int]] = []
        conversations = []
        for query, prompt in zip(queries, prompts):
            response = split_query(query, prompt)
            if response is None:
                slots.append(None)
                continue
            slots.append(len(conversations))
            conversations.append(parse_prompt(prompt, speaker) + [("assistant", response)])
        scored = options.score(normalize(conversations)) if conversations else []
        rewards = [fallback if s is None or scored[s] is None else scored[s] for s in slots]
        unparsed = sum(s is None for s in slots)
        return {
            "rewards": _tensor(rewards),
            "scores": _tensor(rewards),
            "extra_logs": {"emoarc/unparsed": _tensor([float(unparsed)])},
        }

    return reward_func


#: The default reward function (``terminal`` reward, no simulator: warns on single-turn rollouts).
reward_func = make_reward_func()
