"""What every RL adapter does once it has conversations: let the simulated user answer (or warn that the reply
cannot be judged), score the batch in one call, and give each rollout a float, with a rollout that cannot be
scored (an empty or unparsable completion) getting the fallback value instead of failing the batch."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from ._conversations import RawConversation, complete_with_simulator, warn_single_turn

Simulator = Callable[[list[dict]], str]


class UnscoredRolloutWarning(UserWarning):
    """Some rollouts of a batch could not be scored (an empty reply, no turn by the speaker); they got the
    adapter's fallback value."""


@dataclass
class RewardOptions:
    """The reward an adapter computes: ``reward`` and ``config`` as in ``emoarc reward``, whose arc
    (``speaker``), the optional user ``simulator``, and ``fallback`` for rollouts that cannot be scored.

    The default reward is ``terminal`` (the speaker's final well-being): with a simulated user it follows what
    the reply did; without one it is the same for every reply (no signal, but no wrong signal either), whereas
    an accommodation term alone would rank a curt reply above a kind one."""

    estimator: Any = None
    reward: Optional[str] = None
    config: Optional[str] = None
    speaker: str = "user"
    simulator: Optional[Simulator] = None
    fallback: Optional[float] = 0.0
    reading: Optional[str] = None  # None: the library's default reading (whole turns)
    context: Optional[str] = None  # None: the library's default (a turn read after the reply before it)
    _est: Any = field(default=None, repr=False)

    def get_estimator(self):
        if self._est is None:
            from . import default_estimator

            self._est = self.estimator if self.estimator is not None else default_estimator()
        return self._est

    def score(self, convs: Sequence[RawConversation], stacklevel: int = 3) -> list[Optional[float]]:
        """One reward per conversation, in order."""
        from . import _emoarc

        if self.simulator is not None:
            convs = complete_with_simulator(convs, self.simulator, self.speaker)
        else:
            warn_single_turn(convs, self.speaker, stacklevel=stacklevel)
        # A blank turn (an empty completion) is dropped before scoring rather than failing the conversation:
        # it has nothing to read, and the rollout should still get the reward of what was said.
        usable = [(cid, [(r, t) for r, t in turns if t.strip()]) for cid, turns in convs]
        results = _emoarc.reward_records(
            self.get_estimator(), usable, reward=self.reward,
            config=None if self.config is None else os.fspath(self.config),
            speaker=self.speaker, reading=self.reading, context=self.context, rounded=False)
        out: list[Optional[float]] = []
        failed: list[str] = []
        for (cid, _), item in zip(usable, results):
            if isinstance(item, BaseException):
                failed.append(f"{cid}: {item}")
                out.append(self.fallback)
            else:
                import json

                out.append(float(json.loads(item)["reward"]))
        if failed:
            warnings.warn(f"{len(failed)} of {len(usable)} rollouts could not be scored and got {self.fallback!r} "
                          f"(first: {failed[0]})", UnscoredRolloutWarning, stacklevel=stacklevel)
        return out
