"""Reward functions for TRL's ``GRPOTrainer(reward_funcs=...)``.

TRL calls each reward function once per batch as ``f(prompts=..., completions=..., completion_ids=...,
**dataset_columns, trainer_state=...)`` and logs it under ``f.__name__``. Prompts and completions are either
plain strings or, for conversational datasets, lists of ``{"role", "content"}`` messages (the completion is
the assistant's new message). It returns one float per completion; ``None`` marks one that could not be scored,
which TRL leaves out of the mean. ::

    from emoarc.trl import make_reward_func
    trainer = GRPOTrainer(model=..., reward_funcs=[make_reward_func(simulator=my_user_llm)], ...)

A plain prompt is the user's turn. With one reply and no simulator the user's arc cannot move, so every
completion of a prompt scores the same and a :class:`emoarc.SingleTurnWarning` says so: give ``simulator``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from ._conversations import normalize
from ._rollouts import RewardOptions, Simulator


def _messages(x: Any, role: str) -> list:
    return [(role, x)] if isinstance(x, str) else list(x)


def make_reward_func(estimator=None, *, reward: Optional[str] = None, config: Optional[str] = None,
                     speaker: str = "user", simulator: Optional[Simulator] = None,
                     name: str = "emoarc_reward"):
    """A TRL reward function. ``simulator`` (``messages -> next user text``) lets a simulated user answer each
    completion before the user's arc is measured; an unscorable completion gets ``None``."""
    options = RewardOptions(estimator=estimator, reward=reward, config=config, speaker=speaker,
                            simulator=simulator, fallback=None)

    def reward_func(prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                    **kwargs: Any) -> list[Optional[float]]:
        conversations = [
            _messages(p, speaker) + _messages(c, "assistant") for p, c in zip(prompts, completions)
        ]
        return options.score(normalize(conversations))

    reward_func.__name__ = name
    reward_func.__qualname__ = name
    return reward_func


#: The default reward function (``terminal`` reward, no simulator: warns on single-turn rollouts).
reward_func = make_reward_func()
