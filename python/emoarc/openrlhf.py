"""OpenRLHF adapters: an in-process reward function, and the remote reward model.

**In-process.** OpenRLHF loads a Python file given as ``--remote_rm_url reward_func.py`` and calls its
``reward_func(queries, prompts, labels)`` once per batch: ``queries`` are the chat-templated prompt plus
response, ``prompts`` the templated prompts, ``labels`` the ``--label_key`` column. It wants a dict with
``rewards`` (used for advantages), ``scores`` and ``extra_logs``. A file containing
``from emoarc.openrlhf import reward_func`` is enough; ``make_reward_func(simulator=...)`` builds one with a
simulated user (RLVER's setup). Queries are read into turns by the library's reader, the one the reward server
uses: ChatML/Qwen, Llama 2 and 3, Mistral, Gemma, DeepSeek, Phi-3 and ``role: text`` lines are recognised from
their markers (or named with ``template=``); a query with no markers is read as its prompt (one user turn) and
the reply after it. A query that cannot be read, or has no reply, gets the fallback value; it is never read as
all user, which would score the policy's own words as the user's feelings. ``extra_logs`` counts the
unreadable queries (``emoarc/unparsed``) and those with a user turn after the prompt
(``emoarc/speaker_turn_in_reply``: a multi-turn environment's turn, or a reply that spells out turn markers to
write the user's next words itself; the server warns about the same).

**Remote.** ``emoarc serve`` answers OpenRLHF's ``/get_reward`` directly (``--remote_rm_url
http://HOST:PORT/get_reward``); :mod:`emoarc.client` is its Python client.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from ._conversations import normalize
from ._emoarc import TemplateError, split_rollout
from ._rollouts import RewardOptions, Simulator


def turns_of(query: str, prompt: Optional[str] = None, template: Optional[str] = None
             ) -> Optional[list[tuple[str, str]]]:
    """The turns of one rollout, read as ``emoarc serve`` reads ``/get_reward`` (:func:`emoarc.read_rollout`:
    every template family the library knows, reasoning blocks removed, cut-off replies kept); ``None`` when the
    query cannot be read or has no reply after the prompt."""
    read = _read(query, prompt, template)
    return read[0] if read else None


def _read(query: str, prompt: Optional[str], template: Optional[str]
          ) -> Optional[tuple[list[tuple[str, str]], Optional[int]]]:
    """One reading of a rollout (:func:`emoarc.split_rollout`): its turns and the index of the first turn after
    the prompt; ``None`` when it cannot be read or has no reply."""
    try:
        turns, start = split_rollout(query, prompt, template)
    except TemplateError:
        return None
    return (turns, start) if any(role == "assistant" for role, _ in turns) else None


def _tensor(values: list[float]) -> Any:
    """A torch tensor when torch is there (what OpenRLHF expects); a list otherwise (tests, other loops)."""
    try:
        import torch
    except ImportError:
        return values
    return torch.tensor(values, dtype=torch.float32)


def make_reward_func(estimator=None, *, reward: Optional[str] = None, config: Optional[str] = None,
                     speaker: str = "user", simulator: Optional[Simulator] = None, fallback: float = 0.0,
                     template: Optional[str] = None):
    """An OpenRLHF ``reward_func(queries, prompts, labels)``; ``template`` forces a family (one of
    :data:`emoarc.TEMPLATES`) instead of detecting it."""
    options = RewardOptions(estimator=estimator, reward=reward, config=config, speaker=speaker,
                            simulator=simulator, fallback=None)

    def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any] = (), **kwargs: Any
                    ) -> dict[str, Any]:
        slots: list[Optional[int]] = []
        written = 0  # rollouts with a speaker turn after the prompt: an environment's, or one the policy wrote
        conversations = []
        for query, prompt in zip(queries, prompts):
            read = _read(query, prompt, template)
            if read is None:
                slots.append(None)
                continue
            turns, start = read
            slots.append(len(conversations))
            conversations.append(turns)
            written += start is not None and any(role == speaker for role, _ in turns[start:])
        scored = options.score(normalize(conversations)) if conversations else []
        rewards = [fallback if s is None or scored[s] is None else scored[s] for s in slots]
        unparsed = sum(s is None for s in slots)
        return {
            "rewards": _tensor(rewards),
            "scores": _tensor(rewards),
            "extra_logs": {"emoarc/unparsed": _tensor([float(unparsed)]),
                           "emoarc/speaker_turn_in_reply": _tensor([float(written)])},
        }

    return reward_func


#: The default reward function (``terminal`` reward, no simulator: warns on single-turn rollouts).
reward_func = make_reward_func()
