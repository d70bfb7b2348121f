"""Retrieval evaluation: recall@k and MRR of gold sources over a JSONL question set."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragserve.rag import Retriever


class EvalFileError(ValueError):
    """The evaluation file is missing or malformed (the message names the line and field)."""


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    gold_sources: list[str]
    kind: str


@dataclass
class EvalReport:
    k: int
    n: int
    recall_at_k: float
    hit_rate_at_k: float
    mrr: float
    no_gold: list[str] = field(default_factory=list)
    per_question: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "n": self.n,
            "recall_at_k": round(self.recall_at_k, 4),
            "hit_rate_at_k": round(self.hit_rate_at_k, 4),
            "mrr": round(self.mrr, 4),
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
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("question"), str)
            or not obj["question"].strip()
        ):
            raise EvalFileError(f"{path}:{no}: field 'question' must be a non-empty string")
        gold = obj.get("gold_sources", [])
        if not isinstance(gold, list) or not all(isinstance(g, str) for g in gold):
            raise EvalFileError(f"{path}:{no}: field 'gold_sources' must be a list of paths")
        items.append(EvalItem(str(obj.get("id", no)), obj["question"], gold, str(obj.get("kind", ""))))
    if not items:
        raise EvalFileError(f"{path}: no questions")
    return items


def matches(source: str, gold: str) -> bool:
    gold = gold.lstrip("/")
    return source == gold or source.endswith("/" + gold)


def score_ranking(retrieved: Sequence[str], gold: Sequence[str]) -> tuple[float, bool, float]:
    """(recall: share of gold sources in the ranking, hit: any found, reciprocal rank of the first hit)."""
    found = {g for g in gold if any(matches(s, g) for s in retrieved)}
    first = next((i for i, s in enumerate(retrieved, 1) if any(matches(s, g) for g in gold)), None)
    return len(found) / len(gold), bool(found), (1.0 / first if first else 0.0)


async def evaluate(retriever: Retriever, items: Sequence[EvalItem], k: int) -> EvalReport:
    recall_sum = hit_sum = rr_sum = 0.0
    n = 0
    no_gold, per_question = [], []
    for item in items:
        if not item.gold_sources:
            no_gold.append(item.id)
            continue
        ranked = [h.source for h in (await retriever.search(item.question, k)).hits]
        recall, hit, rr = score_ranking(ranked, item.gold_sources)
        n += 1
        recall_sum, hit_sum, rr_sum = recall_sum + recall, hit_sum + hit, rr_sum + rr
        per_question.append(
            {"id": item.id, "kind": item.kind, "recall": recall, "rr": rr, "retrieved": ranked}
        )
    div = max(n, 1)
    return EvalReport(k, n, recall_sum / div, hit_sum / div, rr_sum / div, no_gold, per_question)
