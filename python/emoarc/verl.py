"""verl adapters: a custom reward function and a multi-turn interaction that plays the user.

**Reward function.** verl's reward manager calls ``compute_score(data_source=..., solution_str=...,
ground_truth=..., extra_info=...)`` once per response (``solution_str`` is the decoded response alone) and its
batch manager ``compute_score(data_sources=..., solution_strs=..., ground_truths=..., extra_infos=...)``.
The conversation before the response comes from ``extra_info["messages"]`` (or ``extra_info["prompt"]``):
put it there when building the dataset. Point verl at it with ``custom_reward_function.path`` set to a file
containing ``from emoarc.verl import compute_score``; ``custom_reward_function.reward_kwargs`` reach it as
keyword arguments (``reward``, ``speaker``).

**Interaction.** For multi-turn rollouts verl asks an interaction for the user's next turn:
:class:`EmoarcInteraction` (configured in the interaction YAML with ``class_name:
emoarc.verl.EmoarcInteraction``) answers with the user simulator named in its config and scores each turn
by how the user's arc ends, which is the RLVER setup.
"""

from __future__ import annotations

import importlib
import uuid
from typing import Any, Optional, Sequence

from ._conversations import normalize
from ._rollouts import RewardOptions, Simulator

_DEFAULT = RewardOptions()


def _conversation(solution_str: str, extra_info: Optional[dict], speaker: str) -> list:
    info = extra_info or {}
    before = info.get("messages", info.get("prompt", []))
    if isinstance(before, str):
        before = [(speaker, before)]
    return list(before) + [("assistant", solution_str or "")]


def make_compute_score(estimator=None, *, reward: Optional[str] = None, config: Optional[str] = None,
                       speaker: str = "user", simulator: Optional[Simulator] = None, fallback: float = 0.0):
    """A ``compute_score`` with these options (a rollout that cannot be scored gets ``fallback``)."""
    options = RewardOptions(estimator=estimator, reward=reward, config=config, speaker=speaker,
                            simulator=simulator, fallback=fallback)

    def compute_score(data_source: Any = None, solution_str: str = "", ground_truth: Any = None,
                      extra_info: Optional[dict] = None, **kwargs: Any) -> float:
        opts = _with_kwargs(options, kwargs)
        conv = _conversation(solution_str, extra_info, opts.speaker)
        return opts.score(normalize([conv]))[0]

    return compute_score


def make_compute_score_batch(estimator=None, **options: Any):
    """The batch form (verl's batch reward manager): lists in, one float per response out."""
    opts = RewardOptions(estimator=estimator, **options)

    def compute_score_batch(data_sources: Sequence[Any], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                            extra_infos: Sequence[Optional[dict]], **kwargs: Any) -> list[float]:
        o = _with_kwargs(opts, kwargs)
        convs = [_conversation(s, e, o.speaker) for s, e in zip(solution_strs, extra_infos)]
        return o.score(normalize(convs))

    return compute_score_batch


def _with_kwargs(options: RewardOptions, kwargs: dict) -> RewardOptions:
    """``reward_kwargs`` from verl's config override the adapter's options for this call."""
    known = {k: v for k, v in kwargs.items() if k in ("reward", "config", "speaker", "fallback")}
    if not known:
        return options
    from dataclasses import replace

    return replace(options, **known)


#: verl's default entry point name: ``custom_reward_function.name: compute_score``.
compute_score = make_compute_score()
#: For verl's batch reward manager.
compute_score_batch = make_compute_score_batch()


def _load(path: str) -> Simulator:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class EmoarcInteraction:
    """verl's interaction interface (``start_interaction``, ``generate_response``, ``calculate_score``,
    ``finalize_interaction``) with emoarc playing the user's side.

    Config keys: ``simulator`` (``"module:function"``, a callable ``messages -> next user text``; or pass the
    callable itself as ``simulator``), ``max_user_turns`` (default 3), ``reward`` and ``speaker``. After each
    assistant reply the simulated user answers, and the turn's score is the reward of the conversation so far.
    Without a simulator there is no user answer to measure: the interaction warns, ends the rollout and scores
    what it has.
    """

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.name: str = config.get("name", "emoarc")
        sim = config.get("simulator")
        self.simulator: Optional[Simulator] = _load(sim) if isinstance(sim, str) else sim
        self.max_user_turns = int(config.get("max_user_turns", 3))
        self.options = RewardOptions(estimator=config.get("estimator"), reward=config.get("reward"),
                                     config=config.get("reward_config"), speaker=config.get("speaker", "user"),
                                     simulator=None, fallback=float(config.get("fallback", 0.0)))
        self._instances: dict[str, dict[str, Any]] = {}

    async def start_interaction(self, instance_id: Optional[str] = None, **kwargs: Any) -> str:
        instance_id = instance_id or str(uuid.uuid4())
        self._instances[instance_id] = {"user_turns": 0, "score": 0.0}
        return instance_id

    async def generate_response(self, instance_id: str, messages: list[dict[str, Any]], **kwargs: Any
                                ) -> tuple[bool, str, float, dict[str, Any]]:
        state = self._instances.setdefault(instance_id, {"user_turns": 0, "score": 0.0})
        turns = normalize([messages])[0][1]
        speaker = self.options.speaker
        if self.simulator is None:
            # No user answer is possible: score the conversation as it is (warns that the reply cannot count).
            state["score"] = self.options.score([(instance_id, turns)], stacklevel=3)[0]
            return True, "", state["score"], {"simulated": False}
        reply = str(self.simulator([{"role": r, "content": t} for r, t in turns]))
        state["user_turns"] += 1
        state["score"] = self.options.score([(instance_id, turns + [(speaker, reply)])])[0]
        done = state["user_turns"] >= self.max_user_turns
        return done, reply, state["score"], {"simulated": True, "user_turns": state["user_turns"]}

    async def calculate_score(self, instance_id: Optional[str] = None, **kwargs: Any) -> float:
        if instance_id is None:
            return 0.0
        return float(self._instances.get(instance_id, {}).get("score", 0.0))

    async def finalize_interaction(self, instance_id: Optional[str] = None, **kwargs: Any) -> None:
        if instance_id is not None:
            self._instances.pop(instance_id, None)
