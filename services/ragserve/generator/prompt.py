"""Grounded prompt: contexts best-last, unique sources listed, trimmed with the model's own tokenizer.

As in the walkthrough: the best context goes last (closest to the question), the unique sources are listed,
and the model answers from the context only if it is relevant. Retrieved text is wrapped in <context> tags
and the system prompt says it is data, not instructions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class PromptTooLongError(ValueError):
    """The question alone does not fit ``max_model_len - max_tokens``."""


class ChatTokenizer(Protocol):
    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...

    def encode(self, text: str, **kwargs: Any) -> list[int]: ...

    def decode(self, ids: Sequence[int], **kwargs: Any) -> str: ...


class Context(Protocol):
    source: str
    chunk: str
    score: float


@dataclass
class BuiltPrompt:
    messages: list[dict[str, str]]
    token_ids: list[int]
    contexts: list[Any] = field(default_factory=list)  # in prompt order: best last
    dropped: int = 0  # contexts left out to fit the budget
    truncated: bool = False  # the one kept context was cut to fit


def _quote(text: str) -> str:
    return text.replace("</context", "<\\/context")


def render_user_message(question: str, contexts_best_first: Sequence[Context]) -> str:
    if not contexts_best_first:
        return f"No reference context was found for this question.\n\nQuestion: {question}"
    ordered = list(reversed(contexts_best_first))  # best last
    sources = list(dict.fromkeys(c.source for c in ordered))
    blocks = "\n".join(
        f'<context source="{_quote(c.source)}">\n{_quote(c.chunk)}\n</context>' for c in ordered
    )
    return f"Grounding sources: {', '.join(sources)}\n\nContext:\n{blocks}\n\nQuestion: {question}"


@dataclass
class _Candidate:
    source: str
    chunk: str
    score: float
    hit: Any


class PromptBuilder:
    def __init__(self, tokenizer: ChatTokenizer, system_prompt: str, max_model_len: int):
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.max_model_len = max_model_len

    def encode_messages(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def build(
        self,
        question: str,
        hits_best_first: Sequence[Any],
        max_tokens: int,
        history: Sequence[dict[str, str]] = (),
    ) -> BuiltPrompt:
        """Fit as many of the best contexts as ``max_model_len - max_tokens`` allows (worst dropped first)."""
        budget = self.max_model_len - max_tokens
        if budget <= 0:
            raise PromptTooLongError(
                f"max_tokens ({max_tokens}) leaves no room in max_model_len ({self.max_model_len})"
            )
        kept = [_Candidate(h.source, h.chunk, h.score, h) for h in hits_best_first]
        truncated = False
        while True:
            messages = self._messages(question, kept, history)
            ids = self.encode_messages(messages)
            over = len(ids) - budget
            if over <= 0:
                return BuiltPrompt(
                    messages,
                    ids,
                    [c.hit for c in reversed(kept)],
                    len(hits_best_first) - len(kept),
                    truncated,
                )
            if len(kept) > 1:
                kept.pop()  # drop the worst remaining context
            elif kept and not truncated:
                kept[0] = self._truncate(kept[0], over)
                truncated = True
            elif kept:
                kept.pop()
                truncated = False
            else:
                raise PromptTooLongError(
                    f"the question needs {len(ids)} tokens but only {budget} fit "
                    f"(max_model_len {self.max_model_len} - max_tokens {max_tokens})"
                )

    def _truncate(self, cand: _Candidate, over: int) -> _Candidate:
        ids = self.tokenizer.encode(cand.chunk, add_special_tokens=False)
        keep = max(0, len(ids) - over - 8)  # a little slack: re-tokenizing at the cut can merge differently
        return _Candidate(cand.source, self.tokenizer.decode(ids[:keep]) + " …", cand.score, cand.hit)

    def _messages(
        self, question: str, contexts: Sequence[_Candidate], history: Sequence[dict[str, str]]
    ) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system_prompt},
            *history,
            {"role": "user", "content": render_user_message(question, contexts)},
        ]
