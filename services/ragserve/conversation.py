"""The retrieval query of a chat: what a follow-up means, not only its words.

A follow-up leans on earlier turns ("does that also apply to the Java SDK?"), so its own words often find
the wrong pages. ``retrieval.conversation`` (or a request's ``conversation``) picks how the query is built:

- ``last``: the last user message alone (a one-turn chat always uses this: nothing else to add);
- ``append``: the last message with the earlier messages after it, the assistant's included (they name what
  "it" and "that" refer to), newest first and bounded;
- ``fused``: two searches, the last message alone and ``append``'s text, fused by reciprocal rank;
- ``rewrite``: the Generator rewrites the follow-up into a standalone question (a short prompt, greedy,
  bounded in tokens and time); when it fails or is slow, ``append`` answers instead and the response says why.

docs/retrieval.md ("Conversations") has the comparison that chose the default.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ragserve.config import ConversationMethod
from ragserve.limits import MAX_QUESTION_CHARS
from ragserve.store.milvus import Hit

REWRITE_FALLBACK: ConversationMethod = "append"  # what answers when a rewrite fails or is too slow

REWRITE_SYSTEM_PROMPT = (
    "You rewrite the user's last question so that it can be understood without the conversation. Replace "
    "words like it, that, they or the two with what they refer to, and keep every name, number and setting. "
    "Reply with the rewritten question only, on one line."
)


@dataclass(frozen=True)
class RetrievalQuery:
    """How a request's chunks were found: the text searched, the method that produced the hits, and why the
    configured method was not the one used (None: it was)."""

    text: str
    method: ConversationMethod
    fallback: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "retrieval_query": self.text,
            "retrieval_method": self.method,
            "retrieval_fallback": self.fallback,
        }


def appended(last: str, earlier: Sequence[str], max_messages: int) -> str:
    """The last message, then up to ``max_messages`` earlier messages, most recent first, within the
    query's character limit (older messages are the first to go)."""
    text = last
    for message in list(reversed(earlier))[:max_messages]:
        candidate = f"{text}\n{message}"
        if len(candidate) > MAX_QUESTION_CHARS:
            break
        text = candidate
    return text


def fuse(rankings: Sequence[Sequence[Hit]], top_k: int, rrf_k: int) -> list[Hit]:
    """Reciprocal rank fusion of ranked hit lists (by chunk id): 1 / (rrf_k + rank) summed over the lists.
    Each fused hit keeps the best cosine similarity any list saw for it."""
    scores: dict[str, float] = {}
    best: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, 1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (rrf_k + rank)
            if hit.id not in best or hit.similarity > best[hit.id].similarity:
                best[hit.id] = hit
    order = sorted(scores, key=lambda i: -scores[i])
    return [replace(best[i], score=round(scores[i], 6)) for i in order[:top_k]]


def rewrite_messages(last: str, history: Sequence[dict[str, str]], max_chars: int) -> list[dict[str, str]]:
    """The rewrite prompt: the conversation as quoted lines (the most recent ``max_chars`` of it), then the
    question to rewrite."""
    lines = [f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content'].strip()}" for m in history]
    transcript = "\n".join(lines)[-max_chars:]
    return [
        {"role": "system", "content": REWRITE_SYSTEM_PROMPT},
        {"role": "user", "content": f"Conversation:\n{transcript}\n\nLast question: {last}"},
    ]


_PREFIX = re.compile(r"^\s*(standalone|rewritten)?\s*(question)?\s*:\s*", re.I)


def clean_rewrite(text: str, last: str) -> str | None:
    """The model's rewrite as a query: its first line without a "Question:" prefix or quotes; None when
    that leaves nothing usable (empty, far longer than a question, or the model answered instead)."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = _PREFIX.sub("", line).strip().strip('"“”').strip()
    if not line or len(line) > max(400, 4 * len(last)) or len(line) > MAX_QUESTION_CHARS:
        return None
    return line
