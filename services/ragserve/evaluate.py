"""Retrieval evaluation: recall@k, hit rate, MRR and nDCG@k of gold sources over a JSONL question set, per
question kind, with search latency; questions without gold sources score abstention."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragserve.retrieval import Retriever, SearchResult


class EvalFileError(ValueError):
    """The evaluation file is missing or malformed (the message names the line and field)."""


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    gold_sources: list[str]
    kind: str
    answer_hint: str = ""  # what a right answer says (``eval --answers`` scores its key facts)
    # A conversation's follow-up: the user/assistant turns before ``question`` (oldest first) and the
    # follow-up rewritten as a self-contained question (the ceiling of conversation-aware retrieval).
    turns: tuple[dict[str, str], ...] = ()
    standalone: str = ""


@dataclass
class EvalReport:
    """Retrieval quality of one retrieval mode over a question set (questions without gold sources are
    scored for abstention only)."""

    k: int
    n: int
    recall_at_k: float
    hit_rate_at_k: float
    mrr: float
    ndcg_at_k: float = 0.0
    per_kind: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    abstention: dict[str, Any] = field(default_factory=dict)
    no_gold: list[str] = field(default_factory=list)
    per_question: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "n": self.n,
            "recall_at_k": round(self.recall_at_k, 4),
            "hit_rate_at_k": round(self.hit_rate_at_k, 4),
            "mrr": round(self.mrr, 4),
            "ndcg_at_k": round(self.ndcg_at_k, 4),
            "per_kind": self.per_kind,
            "latency_ms": self.latency_ms,
            "abstention": self.abstention,
            "no_gold_sources": self.no_gold,
            "per_question": self.per_question,
        }


def load_eval_file(path: Path) -> list[EvalItem]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise EvalFileError(f"evaluation file not found: {path}") from None
    except UnicodeDecodeError:
        raise EvalFileError(f"{path} is not UTF-8 text") from None
    items = []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise EvalFileError(f"{path}:{no}: not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict):
            raise EvalFileError(f"{path}:{no}: each line must be a JSON object")
        turns: tuple[dict[str, str], ...] = ()
        if "messages" in obj and "question" not in obj:
            obj["question"], turns = _follow_up(obj["messages"], f"{path}:{no}")
        if not isinstance(obj.get("question"), str) or not obj["question"].strip():
            raise EvalFileError(f"{path}:{no}: field 'question' (or 'messages') must be a non-empty string")
        standalone = obj.get("standalone", "")
        if not isinstance(standalone, str):
            raise EvalFileError(f"{path}:{no}: field 'standalone' must be a string")
        gold = obj.get("gold_sources", [])
        if not isinstance(gold, list) or not all(isinstance(g, str) for g in gold):
            raise EvalFileError(f"{path}:{no}: field 'gold_sources' must be a list of paths")
        hint = obj.get("answer_hint", "")
        if not isinstance(hint, str):
            raise EvalFileError(f"{path}:{no}: field 'answer_hint' must be a string")
        items.append(
            EvalItem(
                str(obj.get("id", no)),
                obj["question"],
                gold,
                str(obj.get("kind", "")),
                hint,
                turns,
                standalone,
            )
        )
    if not items:
        raise EvalFileError(f"{path}: no questions")
    return items


def _follow_up(messages: object, where: str) -> tuple[str, tuple[dict[str, str], ...]]:
    """(the last user message, the user/assistant turns before it) of a conversation item."""
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages)
    ):
        raise EvalFileError(f"{where}: field 'messages' must be a list of {{role, content}} objects")
    if messages[-1].get("role") != "user":
        raise EvalFileError(f"{where}: the last of 'messages' must be the user's follow-up")
    turns = tuple(
        {"role": str(m["role"]), "content": m["content"]}
        for m in messages[:-1]
        if m.get("role") in ("user", "assistant")
    )
    return messages[-1]["content"], turns


def matches(source: str, gold: str) -> bool:
    gold = gold.lstrip("/")
    return source == gold or source.endswith("/" + gold)


def score_ranking(retrieved: Sequence[str], gold: Sequence[str]) -> tuple[float, bool, float]:
    """(recall: share of gold sources in the ranking, hit: any found, reciprocal rank of the first hit)."""
    found = {g for g in gold if any(matches(s, g) for s in retrieved)}
    first = next((i for i, s in enumerate(retrieved, 1) if any(matches(s, g) for g in gold)), None)
    return len(found) / len(gold), bool(found), (1.0 / first if first else 0.0)


def ndcg(retrieved: Sequence[str], gold: Sequence[str]) -> float:
    """nDCG with binary gains: each gold source counts once, at the first chunk that matches it."""
    credited: set[str] = set()
    dcg = 0.0
    for rank, source in enumerate(retrieved, 1):
        new = next((g for g in gold if g not in credited and matches(source, g)), None)
        if new is not None:
            credited.add(new)
            dcg += 1.0 / math.log2(rank + 1)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold), len(retrieved)) + 1))
    return dcg / ideal if ideal else 0.0


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


Search = Callable[[EvalItem], Awaitable[SearchResult]]


async def evaluate(
    retriever: Retriever, items: Sequence[EvalItem], k: int, search: Search | None = None
) -> EvalReport:
    """Score one retriever; ``retriever.covers`` decides abstention (retrieval.min_relevance).
    ``search``: how an item is searched (default: its question alone; a conversation method for chats)."""
    rows: list[dict[str, Any]] = []
    latencies: list[float] = []
    no_gold: list[str] = []
    unanswerable_best: dict[str, float] = {}  # best cosine per unanswerable question (calibration)
    abstained_unanswerable = abstained_answerable = 0
    for item in items:
        started = time.perf_counter()
        found = await (search(item) if search else retriever.search(item.question, k))
        latencies.append((time.perf_counter() - started) * 1000)
        hits = found.hits
        covered = retriever.covers(item.question, found)
        best = round(found.best_similarity, 4)
        if not item.gold_sources:
            no_gold.append(item.id)
            unanswerable_best[item.id] = best
            abstained_unanswerable += not covered
            continue
        abstained_answerable += not covered
        ranked = [h.source for h in hits]
        recall, hit, rr = score_ranking(ranked, item.gold_sources)
        rows.append(
            {
                "id": item.id,
                "kind": item.kind,
                "recall": recall,
                "hit": hit,
                "rr": rr,
                "ndcg": ndcg(ranked, item.gold_sources),
                "best_similarity": best,
                "retrieved": ranked,
            }
        )

    def summary(subset: Sequence[dict[str, Any]]) -> dict[str, float]:
        return {
            "n": len(subset),
            "recall_at_k": round(_mean([r["recall"] for r in subset]), 4),
            "hit_rate_at_k": round(_mean([float(r["hit"]) for r in subset]), 4),
            "mrr": round(_mean([r["rr"] for r in subset]), 4),
            "ndcg_at_k": round(_mean([r["ndcg"] for r in subset]), 4),
        }

    kinds = sorted({r["kind"] for r in rows})
    ordered = sorted(latencies)
    return EvalReport(
        k=k,
        n=len(rows),
        recall_at_k=_mean([r["recall"] for r in rows]),
        hit_rate_at_k=_mean([float(r["hit"]) for r in rows]),
        mrr=_mean([r["rr"] for r in rows]),
        ndcg_at_k=_mean([r["ndcg"] for r in rows]),
        per_kind={kind: summary([r for r in rows if r["kind"] == kind]) for kind in kinds},
        latency_ms={
            "p50": round(ordered[len(ordered) // 2], 2) if ordered else 0.0,
            "p95": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 2) if ordered else 0.0,
        },
        abstention={
            "min_relevance": retriever.cfg.min_relevance,
            "unanswerable": len(no_gold),
            "unanswerable_abstained": abstained_unanswerable,
            "answerable_abstained": abstained_answerable,
            "unanswerable_best_similarity": unanswerable_best,
        },
        no_gold=no_gold,
        per_question=rows,
    )
