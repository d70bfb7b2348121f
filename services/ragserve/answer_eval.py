"""Answer evaluation (``ragserve eval FILE --answers``): what the generated answers hold, not only what was
retrieved.

Key facts are what an answer must carry to be right, taken from the item's ``answer_hint`` by rule so the
score needs no judge model and is the same on every run:

- numbers (``16,384`` and ``16384`` are the same fact; ``8G`` gives ``8``);
- code: every backticked span, and identifier-like words (``snake_case``, ``dotted.names``, ``camelCase``,
  ``ALLCAPS`` such as ``IP`` or ``FLAT``);
- capitalised names (``Bounded``, ``Dify``, ``Elasticsearch``), not counting a sentence's first word;

minus any fact the question already states (repeating the question proves nothing). A fact is found in a text
when it appears there as a whole word, case-insensitively. Per answerable item: the share of its key facts in
the RAG answer (recall), in the contexts the prompt held (the ceiling the generator could reach) and in a
closed-book answer (the same model and sampling, the question alone, no context: the grounding lift is RAG
over closed-book). Citations, two ways: the model's own ``[n]`` marks (an answer cites when it has one; a mark
is valid when ``n`` names a returned source whose chunk holds at least half of the citing sentence's content
words), and the sources the answer rests on (its valid marks, else attribution after generation:
generator/citations.py), with the share of those that are gold sources. Abstention: the answer is the
not-covered sentence (from retrieval or from the model). Also the share of an answer's content words found
nowhere in its contexts (unsupported), looping answers (a 5-word sequence repeated), latency and tokens,
overall and per ``kind``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ragserve.evaluate import EvalItem, matches
from ragserve.generator.citations import MARK, content_words
from ragserve.generator.citations import citations as cite

_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")
_BACKTICKED = re.compile(r"`([^`]+)`")
_WORD = re.compile(r"[A-Za-z_][\w.\-]*[\w]|[A-Za-z]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
# Capitalised words that are not names: sentence openers and the like.
_COMMON = set(
    str.split(
        "a an the yes no it its this that these those if in on for to of by with and or but use set call "
        "then when while each every both only about after before from as at be is are was not there they "
        "you your we our one two build create pass adjust change configure default"
    )
)
_ABBREVIATIONS = {"e.g", "i.e", "etc", "vs"}
ABSTAIN_MARKERS = ("do not cover", "does not cover", "don't cover", "doesn't cover", "not covered")


def _norm(text: str) -> str:
    """Lower case, no backticks, no thousands separators: the form facts are matched in."""
    text = text.replace("`", "").lower()
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)


def key_facts(hint: str, question: str = "") -> list[str]:
    """The key facts of ``hint`` (normalized, in order, unique), minus those ``question`` already holds."""
    found: list[str] = []
    for span in _BACKTICKED.findall(hint):
        found.append(span.strip())
    found += _NUMBER.findall(hint)
    for sentence in _SENTENCE.split(hint):
        for i, word in enumerate(_WORD.findall(_BACKTICKED.sub(" ", sentence))):
            if word.lower() in _ABBREVIATIONS or len(word) < 2:
                continue
            code_like = any(c in word for c in "_.") or re.search(r"[a-z][A-Z]", word)
            caps = word.isupper()
            # a capitalised sentence opener is a name only when the rules above say so
            name = i > 0 and word[0].isupper() and word.lower() not in _COMMON
            if code_like or caps or name:
                found.append(word.strip("."))
    facts = list(dict.fromkeys(_norm(f) for f in found if f.strip()))
    return [f for f in facts if f and not contains(question, f)]


def contains(text: str, fact: str) -> bool:
    """``fact`` (normalized) appears in ``text`` as a whole word or phrase."""
    return re.search(rf"(?<![\w]){re.escape(fact)}(?![\w])", _norm(text)) is not None


def recall(text: str, facts: Sequence[str]) -> float:
    return sum(contains(text, f) for f in facts) / len(facts) if facts else 0.0


def abstains(answer: str) -> bool:
    low = answer.lower()
    return any(marker in low for marker in ABSTAIN_MARKERS)


def loops(answer: str, n: int = 5) -> bool:
    """A word n-gram that occurs twice: degenerate repetition."""
    words = answer.lower().split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(grams) != len(set(grams))


def citations(answer: str, chunks: Sequence[str]) -> tuple[int, int]:
    """The model's own marks: (citations, valid ones). ``[n]`` is valid when source n exists and its chunk
    holds at least half of the citing sentence's content words."""
    total = valid = 0
    for sentence in _SENTENCE.split(answer):
        words = content_words(sentence)
        for mark in MARK.findall(sentence):
            total += 1
            n = int(mark)
            if 1 <= n <= len(chunks):
                chunk = set(content_words(chunks[n - 1]))
                valid += not words or sum(w in chunk for w in words) * 2 >= len(words)
    return total, valid


def unsupported(answer: str, contexts: Sequence[str]) -> float:
    """Share of the answer's content words that no context holds."""
    words = content_words(answer)
    known = set(content_words("\n".join(contexts)))
    return sum(w not in known for w in words) / len(words) if words else 0.0


@dataclass
class AnswerRow:
    id: str
    kind: str
    answerable: bool
    facts: list[str]
    answer: str
    grounded: bool
    recall: float  # of the whole answer, as the reader gets it (with the evidence section, if any)
    recall_generated: float  # of the model's own text (the answer before its evidence section)
    ceiling: float
    closed_book: float | None
    cited: bool
    citations: int
    valid_citations: int
    attributed: list[int]  # source numbers the answer rests on (its own marks, else attribution)
    attributed_to_gold: int  # how many of those are gold sources
    abstained: bool
    unsupported: float
    loops: bool
    latency_ms: float
    ttft_ms: float
    completion_tokens: int


def score_answer(
    item: EvalItem,
    answer: str,
    contexts: Sequence[tuple[str, str]],
    grounded: bool,
    closed_book: str | None,
    timings: dict[str, float],
    completion_tokens: int,
    evidence_at: int | None = None,
) -> AnswerRow:
    """One item's row; ``contexts`` are the (source, chunk) pairs the prompt held, in returned-source order
    (best first); ``answer[evidence_at:]`` is its evidence section (generator/evidence.py). Citations,
    support, loops and abstention are the model's own text's: quotes are right by construction."""
    facts = key_facts(item.answer_hint, item.question)
    sources = [s for s, _ in contexts]
    chunks = [c for _, c in contexts]
    generated = answer if evidence_at is None else answer[:evidence_at]
    total, valid = citations(generated, chunks)
    attributed = cite(generated, chunks)[0] if grounded else []
    to_gold = sum(any(matches(sources[n - 1], g) for g in item.gold_sources) for n in attributed)
    return AnswerRow(
        id=item.id,
        kind=item.kind,
        answerable=bool(item.gold_sources),
        facts=facts,
        answer=answer,
        grounded=grounded,
        recall=recall(answer, facts),
        recall_generated=recall(generated, facts),
        ceiling=recall("\n".join(chunks), facts),
        closed_book=None if closed_book is None else recall(closed_book, facts),
        cited=total > 0,
        citations=total,
        valid_citations=valid,
        attributed=attributed,
        attributed_to_gold=to_gold,
        abstained=not grounded or abstains(generated),
        unsupported=unsupported(generated, chunks) if grounded else 0.0,
        loops=loops(generated),
        latency_ms=timings.get("total_ms", 0.0),
        ttft_ms=timings.get("ttft_ms", 0.0),
        completion_tokens=completion_tokens,
    )


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 1) if ordered else 0.0


def summarize(rows: Sequence[AnswerRow]) -> dict[str, Any]:
    """The figures of a set of rows (key-fact figures over answerable items that have key facts)."""
    scored = [r for r in rows if r.answerable and r.facts]
    answerable = [r for r in rows if r.answerable]
    unanswerable = [r for r in rows if not r.answerable]
    generated = [r for r in rows if r.grounded]
    closed = [r.closed_book for r in scored if r.closed_book is not None]
    rag, ceiling = _mean([r.recall for r in scored]), _mean([r.ceiling for r in scored])
    model_alone = _mean([r.recall_generated for r in scored])
    n_citations = sum(r.citations for r in answerable)
    answered = [r for r in answerable if not r.abstained]
    n_attributed = sum(len(r.attributed) for r in answered)
    return {
        "n": len(rows),
        "scored": len(scored),
        "key_fact_recall": {
            "rag": rag,
            "closed_book": _mean(closed) if closed else None,
            "context_ceiling": ceiling,
            "rag_over_ceiling": round(rag / ceiling, 4) if ceiling else None,
            "model_text": model_alone,  # the answer without its evidence section
            "model_text_over_ceiling": round(model_alone / ceiling, 4) if ceiling else None,
        },
        "answers_with_a_fact": sum(r.recall > 0 for r in scored),
        "citations": {
            "answers_citing": _mean([float(r.cited) for r in answered]),
            "valid": round(sum(r.valid_citations for r in answerable) / n_citations, 4)
            if n_citations
            else None,
            "answers_with_a_source": _mean([float(bool(r.attributed)) for r in answered]),
            "sources_gold": round(sum(r.attributed_to_gold for r in answered) / n_attributed, 4)
            if n_attributed
            else None,
        },
        "abstention": {
            "unanswerable": len(unanswerable),
            "unanswerable_abstained": sum(r.abstained for r in unanswerable),
            "answerable_abstained": sum(r.abstained for r in answerable),
        },
        "unsupported_words": _mean([r.unsupported for r in answerable if r.grounded]),
        "looping_answers": sum(r.loops for r in rows),
        "latency_ms": {
            "p50": _pct([r.latency_ms for r in generated], 0.5),
            "p95": _pct([r.latency_ms for r in generated], 0.95),
            "ttft_p50": _pct([r.ttft_ms for r in generated], 0.5),
        },
        "completion_tokens_mean": round(_mean([float(r.completion_tokens) for r in generated]), 1),
    }


async def evaluate_answers(
    pipeline: Any,  # RagPipeline
    generator: Any,  # TextGenerator with generate(); None: no closed-book pass
    tokenizer: Any,
    items: Sequence[EvalItem],
    sampling: Any,  # SamplingConfig
    top_k: int,
    closed_book_prompt: str | None,
) -> dict[str, Any]:
    """Answer every item through ``pipeline`` (retrieval, prompt, generation) and, when
    ``closed_book_prompt`` is given, once more with that system prompt and the question alone. A
    conversation's follow-up is asked as the chat API asks it: its earlier turns are the prompt's history
    and what its retrieval query is built from (retrieval.conversation)."""
    from ragserve.rag import RagRequest

    rows: list[AnswerRow] = []
    for item in items:
        request = RagRequest(item.question, sampling, top_k, history=item.turns, turns=item.turns)
        answer = await pipeline.answer(request)
        held = answer.sources[: len(answer.sources) - answer.contexts_dropped]
        closed = None
        if closed_book_prompt is not None and item.gold_sources:
            closed = await _closed_book(
                generator, tokenizer, closed_book_prompt, [*item.turns, _user(item.question)], sampling
            )
        rows.append(
            score_answer(
                item,
                answer.answer,
                [(h.source, h.chunk) for h in held],
                answer.grounded,
                closed,
                answer.timings,
                answer.usage.get("completion_tokens", 0),
                answer.evidence_at,
            )
        )
    kinds = sorted({r.kind for r in rows})
    return {
        **summarize(rows),
        "per_kind": {kind: summarize([r for r in rows if r.kind == kind]) for kind in kinds},
        "sampling": sampling.model_dump(),
        "per_question": [vars(r) for r in rows],
    }


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


async def _closed_book(
    generator: Any, tokenizer: Any, system: str, chat: Sequence[dict[str, str]], sampling: Any
) -> str:
    messages = [{"role": "system", "content": system}, *chat]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    return "".join([d.text async for d in generator.generate(ids, sampling)])


# The closed-book pass: the same model, sampling and answer length, without context (and so without the RAG
# prompt's rule to answer from it only).
CLOSED_BOOK_PROMPT = "You answer questions about Milvus and its documentation in one to three sentences."


def format_report(report: dict[str, Any]) -> list[str]:
    """The report as the few lines a terminal shows (``--json`` has everything)."""

    def line(name: str, r: dict[str, Any]) -> str:
        k, c, a, lat = r["key_fact_recall"], r["citations"], r["abstention"], r["latency_ms"]
        closed = "-" if k["closed_book"] is None else f"{k['closed_book']:.2f}"
        valid = "-" if c["valid"] is None else f"{c['valid']:.2f}"
        gold = "-" if c["sources_gold"] is None else f"{c['sources_gold']:.2f}"
        return (
            f"{name:<12} n={r['n']:>2} scored={r['scored']:>2}  key facts: RAG {k['rag']:.2f} (model's text "
            f"{k['model_text']:.2f}), closed-book "
            f"{closed}, context {k['context_ceiling']:.2f}  [n] {c['answers_citing']:.2f} (valid {valid}), "
            f"sourced {c['answers_with_a_source']:.2f} (gold {gold})  "
            f"abstained {a['unanswerable_abstained']}/{a['unanswerable']} unanswerable, "
            f"{a['answerable_abstained']} answerable  unsupported {r['unsupported_words']:.2f}  "
            f"loops {r['looping_answers']}  p50 {lat['p50'] / 1000:.1f} s (ttft {lat['ttft_p50']:.0f} ms)  "
            f"tokens {r['completion_tokens_mean']:.0f}"
        )

    lines = [line("all", report)]
    lines += [line(kind or "(no kind)", r) for kind, r in report["per_kind"].items()]
    return lines
