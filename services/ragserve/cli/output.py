"""What ``search``, ``query`` and ``stats`` print, from the HTTP API's JSON shapes: the same output whether
the command ran in this process or through ``--url``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ragserve.observability.logging import Console


def print_json(con: Console, obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False), file=con.out)


def print_hits(con: Console, hits: Sequence[Mapping[str, Any]]) -> None:
    """One line a hit: rank, score, source#chunk and the chunk's first 160 characters."""
    for rank, hit in enumerate(hits, 1):
        preview = " ".join(hit["chunk"].split())[:160]
        print(f"{rank:>2}. {hit['score']:.4f}  {hit['source']}#{hit['chunk_index']}  {preview}", file=con.out)


def print_answer(con: Console, body: Mapping[str, Any]) -> None:
    """The answer, its sources and the per-stage timings (a ``/v1/query`` body's fields)."""
    print(body["answer"] or "(empty answer)", file=con.out)
    print("\nSources:", file=con.out)
    for hit in body["sources"]:
        print(f"  {hit['score']:.4f}  {hit['source']}#{hit['chunk_index']}", file=con.out)
    t = body["timings"]
    print(
        f"\nembed {t['embed_ms']:.0f} ms, search {t['search_ms']:.0f} ms, prompt {t['prompt_ms']:.0f} ms, "
        f"generate {t['generate_ms']:.0f} ms (ttft {t['ttft_ms']:.0f} ms); tokens {body['usage']}",
        file=con.out,
    )
