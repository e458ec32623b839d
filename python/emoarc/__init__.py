"""emoarc in Python: 40 EmoNet emotion intensities per text, emotion arcs of conversations and rewards for RL.

Everything numeric runs in the Rust library (the same code as the ``emoarc`` command line), with the GIL
released, so threads can score in parallel. ::

    import emoarc
    est = emoarc.Estimator()                      # the shipped model, verified against its manifest
    est.score(["I am furious"]).shape             # (1, 40), float32, columns in emoarc.CATEGORIES order
    emoarc.reward(est, [[("user", "my dog died"), ("assistant", "I am so sorry."), ("user", "thanks")]])

Adapters for RL frameworks live in :mod:`emoarc.trl`, :mod:`emoarc.verl` and :mod:`emoarc.openrlhf`; batch
scoring with Ray Data in :mod:`emoarc.ray_data`; the HTTP client of ``emoarc serve`` in :mod:`emoarc.client`.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

from . import _emoarc
from ._conversations import Conversation, SingleTurnWarning, complete_with_simulator, normalize, warn_single_turn
from ._rollouts import UnscoredRolloutWarning
from ._emoarc import (
    CATEGORIES,
    TAXONOMY_VERSION,
    TEMPLATES,
    ConfigError,
    ConversationError,
    EmoarcError,
    InputError,
    ModelError,
    TemplateError,
    read_rollout,
    split_rollout,
    turns_after_prompt,
)

__all__ = [
    "CATEGORIES",
    "TAXONOMY_VERSION",
    "TEMPLATES",
    "ArcTracker",
    "ConfigError",
    "ConversationError",
    "EmoarcError",
    "Estimator",
    "InputError",
    "ModelError",
    "SingleTurnWarning",
    "TemplateError",
    "UnscoredRolloutWarning",
    "arc",
    "default_estimator",
    "read_rollout",
    "split_rollout",
    "turns_after_prompt",
    "reward",
    "shipped_model",
]

__version__ = "0.1.0"

PathLike = Union[str, "os.PathLike[str]"]


def shipped_model() -> Optional[str]:
    """The model folder this package carries, or ``None`` when it carries none (a development build), in which
    case the library looks where the CLI looks (``./models/emoarc-minilm``, then the checkout it was built from)."""
    here = Path(__file__).resolve().parent / "models" / "emoarc-minilm"
    return str(here) if (here / "emoarc.json").is_file() else None


class Estimator(_emoarc.Estimator):
    """The emotion estimator: a model loaded once and shared by every call and thread.

    ``model`` is a model folder (default: ``EMOARC_MODEL`` if set, else the model inside this package),
    ``head`` one of its heads (default: the model's default), ``backend`` the CLI's ``--precision`` (auto, f32,
    f16, bf16, int16, int8) and ``device`` its ``--device`` (auto, cpu, cuda[:N]). Pin ``backend`` when numbers must
    match across machines: ``auto`` picks the fastest for each CPU.
    """

    def __new__(cls, model: Optional[PathLike] = None, head: Optional[str] = None, backend: str = "auto", **options: Any):
        if model is None and not os.environ.get("EMOARC_MODEL", "").strip():
            model = shipped_model()
        return super().__new__(cls, None if model is None else os.fspath(model), head, backend, **options)

    def score_dicts(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """The 40 intensities of each text as ``{category: value}`` dicts, in ``CATEGORIES`` order."""
        return [dict(zip(CATEGORIES, row.tolist())) for row in self.score(list(texts))]

    def __repr__(self) -> str:
        return f"emoarc.Estimator(model={self.model_dir!r}, head={self.head!r}, backend={self.backend!r})"


_DEFAULT: Optional[Estimator] = None


def default_estimator() -> Estimator:
    """One shared :class:`Estimator` per process, built on first use (what the adapters use when given none)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Estimator()
    return _DEFAULT


def _records(kind: Callable[..., list], estimator: Estimator, conversations: Iterable[Conversation], skip_bad: bool,
             **kwargs: Any) -> list[dict]:
    """Runs one of the Rust record functions; a conversation that cannot be scored raises (the CLI's behaviour)
    or, with ``skip_bad``, comes back as ``{"id": ..., "error": message}``."""
    raw = normalize(conversations)
    out = []
    for (cid, _), item in zip(raw, kind(estimator, raw, **kwargs)):
        if isinstance(item, BaseException):
            if not skip_bad:
                raise item
            out.append({"id": cid, "error": str(item)})
        else:
            out.append(json.loads(item))
    return out


def arc(estimator: Estimator, turns: Union[Conversation, Sequence[Conversation]], speaker: str = "user", *,
        reading: Optional[str] = None, affect: Optional[str] = None, context: Optional[str] = None,
        skip_bad: bool = False, rounded: bool = True):
    """The emotion arc of ``speaker``: ``emoarc arc``'s record (``id``, ``speaker``, ``arc`` with ``turns``,
    ``wellbeing``, ``valence``, ``arousal``, ``summary``). ``turns`` is one conversation (a list of
    ``(role, text)`` pairs or ``{"role", "content"}`` messages) or a list of them; one in, one record out.
    ``reading`` (``"whole"`` or ``"clauses"``), ``affect`` (``"table"`` or ``"learned"``) and ``context``
    (``"previous"``: a speaker's turn read after the reply before it, when the model reads context; or
    ``"alone"``) are the CLI's ``--reading``, ``--affect`` and ``--context``; left out, the library's defaults
    (whole turns, the table, the reply before)."""
    single = _is_one_conversation(turns)
    records = _records(_emoarc.arc_records, estimator, [turns] if single else turns, skip_bad,
                       speaker=speaker, reading=reading, affect=affect, context=context, rounded=rounded)
    return records[0] if single else records


def reward(estimator: Estimator, conversations: Sequence[Conversation], reward: Optional[str] = None, *,
           config: Optional[PathLike] = None, speaker: str = "user", reading: Optional[str] = None, affect: Optional[str] = None,
           context: Optional[str] = None, simulator: Optional[Callable[[list[dict]], str]] = None, skip_bad: bool = False,
           rounded: bool = True) -> list[dict]:
    """``emoarc reward``'s records, one per conversation: ``id``, ``reward``, ``arc``, ``terms`` and
    ``accommodation``. ``reward`` is a term or weighted sum such as ``"terminal"`` or
    ``"terminal=1,accommodation=0.5"``, ``config`` the CLI's TOML file; both as in the CLI.

    A conversation whose last turn is not the speaker's cannot show what the reply did to the speaker: given a
    ``simulator`` (``messages -> next user text``), the simulated user answers first; without one a
    :class:`SingleTurnWarning` says so and the conversation is scored as it is.
    """
    convs = normalize(conversations)
    if simulator is not None:
        convs = complete_with_simulator(convs, simulator, speaker)
    else:
        warn_single_turn(convs, speaker, stacklevel=3)
    return _records(_emoarc.reward_records, estimator, convs, skip_bad, reward=reward,
                    config=None if config is None else os.fspath(config), speaker=speaker, reading=reading,
                    affect=affect, context=context, rounded=rounded)


class ArcTracker:
    """A conversation scored one turn at a time, as a rollout produces it: ``push(role, text)`` encodes only
    the new turn's clauses not already cached, ``reward()`` is the reward so far (``None`` until the speaker
    has a turn). ``reward`` and ``config`` are as in :func:`reward`.

    ``reward()`` warns with :class:`SingleTurnWarning` when the last turn pushed is not the speaker's: the reward
    cannot reflect that turn until the speaker answers.
    """

    def __init__(self, estimator: Optional[Estimator] = None, speaker: str = "user", reward: Optional[str] = None,
                 config: Optional[PathLike] = None, *, id: str = "conversation", reading: Optional[str] = None,
                 affect: Optional[str] = None, context: Optional[str] = None):
        est = default_estimator() if estimator is None else estimator
        self.speaker = speaker
        self._inner = _emoarc.ArcTracker(est, speaker, reward, None if config is None else os.fspath(config),
                                         id=id, reading=reading, affect=affect, context=context)

    def push(self, role: str, text: str) -> None:
        """Scores the next turn and appends it; a refused text raises and leaves the conversation unchanged."""
        self._inner.push(role, text)

    def reward(self) -> Optional[float]:
        """The reward of the conversation so far; ``None`` until the speaker has a turn."""
        roles = self._inner.roles()
        if roles and roles[-1] != self.speaker and self.speaker in roles:
            warnings.warn(
                f"the last turn is by {roles[-1]!r}, not {self.speaker!r}: the reward cannot reflect it until "
                f"{self.speaker!r} answers (push a real or simulated {self.speaker!r} turn first)",
                SingleTurnWarning, stacklevel=2)
        return self._inner.reward()

    def terms(self) -> dict[str, float]:
        """Each reward term's value so far."""
        return dict(self._inner.terms())

    def record(self) -> dict:
        """``emoarc reward``'s record of the conversation so far (unrounded)."""
        return json.loads(self._inner.record())

    def reset(self, id: str = "conversation") -> None:
        """Starts a new conversation; texts already seen stay cached."""
        self._inner.reset(id)


def _is_one_conversation(x: Any) -> bool:
    """One conversation is a list of turns (pairs or message dicts) or a dict with ``turns``/``messages``; a
    list of conversations is a list of those."""
    if isinstance(x, dict):
        return True
    if not x:
        return False
    first = x[0]
    return isinstance(first, tuple) or (isinstance(first, dict) and "role" in first)
