"""Type stubs of the extension module ``emoarc._emoarc`` (the Rust side of the package)."""

from typing import Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

CATEGORIES: list[str]
TAXONOMY_VERSION: str
TEMPLATES: list[str]

class EmoarcError(Exception): ...

class InputError(EmoarcError):
    index: int
    problem: str

class ModelError(EmoarcError): ...
class ConfigError(EmoarcError): ...

class ConversationError(EmoarcError):
    id: Optional[str]
    turn: Optional[int]
    problem: str

class TemplateError(EmoarcError):
    code: str

class Estimator:
    def __new__(
        cls,
        model: Optional[str] = None,
        head: Optional[str] = None,
        backend: str = "auto",
        *,
        device: str = "auto",
        manifest: Optional[str] = None,
        max_length: Optional[int] = None,
        on_long: str = "truncate",
        token_budget: Optional[int] = None,
        max_batch: int = 256,
    ) -> "Estimator": ...
    def score(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...
    def score_each(self, texts: Sequence[str]) -> tuple[npt.NDArray[np.float32], list[Optional[str]]]: ...
    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...
    def score_records(self, texts: Sequence[str], ids: Optional[Sequence[str]] = None, top: int = 3) -> list[str]: ...
    @property
    def backend(self) -> str: ...
    @property
    def head(self) -> str: ...
    @property
    def model_dir(self) -> str: ...
    @property
    def max_length(self) -> int: ...

_Raw = Sequence[tuple[str, Sequence[tuple[str, str]]]]

def arc_records(
    estimator: Estimator, conversations: _Raw, speaker: str = "user", reading: Optional[str] = None,
    affect: Optional[str] = None, rounded: bool = True, context: Optional[str] = None,
) -> list[Union[str, EmoarcError]]: ...
def reward_records(
    estimator: Estimator, conversations: _Raw, reward: Optional[str] = None, config: Optional[str] = None,
    speaker: str = "user", reading: Optional[str] = None, affect: Optional[str] = None, rounded: bool = True,
    context: Optional[str] = None,
) -> list[Union[str, EmoarcError]]: ...

def read_rollout(query: str, prompt: Optional[str] = None, template: Optional[str] = None) -> list[tuple[str, str]]: ...
def turns_after_prompt(query: str, prompt: str, template: Optional[str] = None) -> Optional[list[tuple[str, str]]]: ...
def split_rollout(
    query: str, prompt: Optional[str] = None, template: Optional[str] = None,
) -> tuple[list[tuple[str, str]], Optional[int]]: ...

class ArcTracker:
    def __new__(
        cls, estimator: Estimator, speaker: str = "user", reward: Optional[str] = None, config: Optional[str] = None,
        id: str = "conversation", reading: Optional[str] = None, affect: Optional[str] = None,
        context: Optional[str] = None,
    ) -> "ArcTracker": ...
    def push(self, role: str, text: str) -> None: ...
    def reward(self) -> Optional[float]: ...
    def terms(self) -> list[tuple[str, float]]: ...
    def record(self) -> str: ...
    def roles(self) -> list[str]: ...
    def reset(self, id: str) -> None: ...
    @property
    def reward_name(self) -> str: ...
