"""Grounded prompt: numbered contexts best-last, quoted so retrieved text cannot break out, trimmed with the
model's own tokenizer.

As in the walkthrough: the best context goes last (closest to the question) and the model answers from the
context only if it is relevant. Each retrieved chunk is one ``<context n="N" source="...">`` block, where N
is its rank in the ``sources`` the API returns (1 = best): an answer's ``[N]`` names that source.

Retrieved text is data written by whoever wrote the documents (or posted them through the API), so it must
not be able to end its block or open a fake one: every ``<`` that starts something tag-like named
``context`` (any case, any spaces, opening or closing) becomes ``&lt;``, and a source name is
attribute-escaped (quotes, angle brackets, line breaks). Escaping rather than per-request random delimiters:
the prompt stays deterministic (tests, prefix caching) and there is no delimiter left for text to guess.
This keeps the structure intact; it does not stop a model from obeying instructions written inside a
document (docs/answers.md, "Instructions inside documents").
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from ragserve.generator.instructions import remove_instructions
from ragserve.observability import metrics


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
    # Each context's text as the prompt quotes it, in the same order: instructions removed
    # (prompt.remove_instructions), cut when truncated.
    texts: list[str] = field(default_factory=list)


# "<" opening anything that reads as a context tag: "</CONTEXT >", "< context source=...>", "</ context".
_TAG_LIKE = re.compile(r"<(?=\s*/?\s*context)", re.IGNORECASE)


def quote_text(text: str) -> str:
    """Retrieved (or asked) text as block content: it can neither close its block nor open another."""
    return _TAG_LIKE.sub("&lt;", text)


def quote_attr(value: str) -> str:
    """A source name as an attribute value: one line, no quote or angle bracket left to end the tag."""
    return html.escape(" ".join(value.split()), quote=True)


def render_block(c: Context, n: int) -> str:
    """One retrieved chunk as the prompt quotes it; ``n`` is its 1-based rank in the returned sources."""
    return f'<context n="{n}" source="{quote_attr(c.source)}">\n{quote_text(c.chunk)}\n</context>'


def render_user_message(question: str, contexts_best_first: Sequence[Context]) -> str:
    if not contexts_best_first:
        return f"No reference context was found for this question.\n\nQuestion: {quote_text(question)}"
    numbered = list(enumerate(contexts_best_first, 1))
    blocks = "\n".join(render_block(c, n) for n, c in reversed(numbered))  # best last
    return f"Context:\n{blocks}\n\nQuestion: {quote_text(question)}"


@dataclass
class _Candidate:
    source: str
    chunk: str
    score: float
    hit: Any


class PromptBuilder:
    """Builds and trims prompts in the generator model's token ids.

    Cost is bounded whatever the request: the whole prompt is templated and tokenized at most a few times
    (all contexts; if over budget, the fixed part alone and then the estimated fit), never once per dropped
    context. ``build_async`` runs it on one worker thread of its own: off the replica's event loop, and one
    at a time (a fast tokenizer used from two threads at once can fail with "Already borrowed")."""

    def __init__(
        self,
        tokenizer: ChatTokenizer,
        system_prompt: str,
        max_model_len: int,
        *,
        remove_instructions: bool,
    ):
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.max_model_len = max_model_len
        self.remove_instructions = remove_instructions  # prompt.remove_instructions
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="prompt")

    def encode_messages(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    async def encode_async(self, messages: list[dict[str, str]]) -> list[int]:
        """``encode_messages`` on the builder's worker thread (another prompt, e.g. a follow-up's rewrite)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._worker, partial(self.encode_messages, messages)
        )

    async def build_async(
        self,
        question: str,
        hits_best_first: Sequence[Any],
        max_tokens: int,
        history: Sequence[dict[str, str]] = (),
    ) -> BuiltPrompt:
        """``build`` on the builder's worker thread."""
        call = partial(self.build, question, hits_best_first, max_tokens, history)
        return await asyncio.get_running_loop().run_in_executor(self._worker, call)

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
        kept = [_Candidate(h.source, self._prompt_text(h.chunk), h.score, h) for h in hits_best_first]
        messages = self._messages(question, kept, history)
        ids = self.encode_messages(messages)
        if len(ids) > budget and kept:
            kept = self._estimate_fit(question, kept, history, budget, max_tokens)
            messages = self._messages(question, kept, history)
            ids = self.encode_messages(messages)
        truncated = False
        while True:  # the estimate is usually exact; a token merged across a boundary costs one more round
            over = len(ids) - budget
            if over <= 0:
                return BuiltPrompt(
                    messages,
                    ids,
                    [c.hit for c in reversed(kept)],
                    len(hits_best_first) - len(kept),
                    truncated,
                    [c.chunk for c in reversed(kept)],
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
            messages = self._messages(question, kept, history)
            ids = self.encode_messages(messages)

    def _prompt_text(self, chunk: str) -> str:
        """The chunk as the prompt quotes it: without sentences addressed to the model, when configured."""
        if not self.remove_instructions:
            return chunk
        text, removed = remove_instructions(chunk)
        if removed:
            metrics.INSTRUCTIONS_REMOVED.inc(removed)
        return text

    def _estimate_fit(
        self,
        question: str,
        kept: list[_Candidate],
        history: Sequence[dict[str, str]],
        budget: int,
        max_tokens: int,
    ) -> list[_Candidate]:
        """The best contexts whose blocks fit beside the fixed part (system, history, question), counted
        once each; when not even the best one fits whole, it alone, for the caller to truncate. Raises
        PromptTooLongError when the fixed part alone is over budget."""
        fixed = len(self.encode_messages(self._messages(question, kept[:1], history)))
        fixed -= self._block_tokens(kept[0], 1)
        if fixed > budget:
            raise PromptTooLongError(
                f"the question (with the conversation) needs {fixed} tokens but only {budget} fit "
                f"(max_model_len {self.max_model_len} - max_tokens {max_tokens})"
            )
        fitted, used = [], fixed
        for n, cand in enumerate(kept, 1):
            used += self._block_tokens(cand, n)
            if used > budget:
                break
            fitted.append(cand)
        return fitted or kept[:1]

    def _block_tokens(self, cand: _Candidate, n: int) -> int:
        return len(self.tokenizer.encode(render_block(cand, n), add_special_tokens=False))

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
