"""Conversations as Python callers write them, brought to one form for the Rust side; the single-turn check and
its warning; and the user simulator that lets a simulated user answer a reply before the arc is measured."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterable, Sequence, Union

# A conversation: a list of (role, text) pairs, a list of {"role", "content" or "text"} messages, or a dict
# with "id" and "turns" or "messages" (the CLI's JSONL shapes).
Conversation = Union[Sequence[Any], dict]
RawConversation = tuple  # (id, [(role, text), ...]) as the extension takes it


class SingleTurnWarning(UserWarning):
    """The speaker has no turn after the last reply, so the reply cannot move the speaker's arc: every reply
    gets the same arc (and a guard-only reward can favour a rude reply). Give a user simulator, or roll out
    multi-turn conversations."""


def _turn(t: Any) -> tuple[str, str]:
    if isinstance(t, dict):
        text = t.get("content", t.get("text"))
        # Multimodal message content (a list of parts): only the text parts carry what emoarc reads.
        if isinstance(text, list):
            text = " ".join(p.get("text", "") for p in text if isinstance(p, dict))
        return str(t["role"]), "" if text is None else str(text)
    role, text = t
    return str(role), "" if text is None else str(text)


def normalize(conversations: Iterable[Conversation]) -> list[RawConversation]:
    """``(id, [(role, text)])`` for each conversation; ids default to the position (``"0"``, ``"1"``, ...)."""
    out = []
    for i, c in enumerate(conversations):
        if isinstance(c, dict):
            turns = c.get("turns", c.get("messages"))
            if turns is None:
                raise TypeError(f"conversation {i}: a dict needs \"turns\" or \"messages\"")
            out.append((str(c.get("id", i)), [_turn(t) for t in turns]))
        elif isinstance(c, tuple) and len(c) == 2 and isinstance(c[0], str) and isinstance(c[1], list):
            out.append((c[0], [_turn(t) for t in c[1]]))
        else:
            out.append((str(i), [_turn(t) for t in c]))
    return out


def ends_without_speaker(turns: Sequence[tuple[str, str]], speaker: str) -> bool:
    """True when someone else spoke last: that last reply cannot show in the speaker's arc."""
    return bool(turns) and turns[-1][0] != speaker


def warn_single_turn(convs: Sequence[RawConversation], speaker: str, stacklevel: int = 2) -> None:
    """One :class:`SingleTurnWarning` for a batch in which some conversation ends with another role's turn."""
    open_ended = [cid for cid, turns in convs if ends_without_speaker(turns, speaker)]
    if open_ended:
        warnings.warn(
            f"{len(open_ended)} of {len(convs)} conversations (first: {open_ended[0]!r}) end with a reply that "
            f"{speaker!r} never answers: the reply cannot move {speaker!r}'s arc, so every reply scores the same "
            f"there. Pass simulator= (a callable messages -> next {speaker} text) or roll out multi-turn "
            f"conversations.",
            SingleTurnWarning,
            stacklevel=stacklevel + 1,
        )


def as_messages(turns: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """OpenAI-style messages, the shape an LLM call (the usual simulator) takes."""
    return [{"role": role, "content": text} for role, text in turns]


def complete_with_simulator(convs: Sequence[RawConversation], simulator: Callable[[list[dict]], str],
                            speaker: str) -> list[RawConversation]:
    """Lets the simulated speaker answer every conversation that ends with another role's turn. The simulator
    gets the messages so far and returns the speaker's next text; its errors propagate (a broken simulator
    should stop training, not quietly zero the rewards)."""
    out = []
    for cid, turns in convs:
        if ends_without_speaker(turns, speaker):
            turns = list(turns) + [(speaker, str(simulator(as_messages(turns))))]
        out.append((cid, turns))
    return out
