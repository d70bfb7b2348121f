"""Retrieval quality of each method on the Milvus docs corpus, from one command: every chunking variant is
ingested into its own collection, then `ragserve eval --compare dense,hybrid` scores both retrieval modes
on the dev set and on our own question set (eval/questions.jsonl), same collection, same questions.

    .venv/bin/python load-tests/retrieval_eval.py            # -> load-tests/results/retrieval.json
    .venv/bin/python load-tests/retrieval_eval.py --reuse     # keep collections ingested by an earlier run

Variants: `walkthrough` (the notebook's recipe: recursive 512/10 %, the bare chunk embedded, no per-source
cap), `recursive-nocap` (the title embedded with each chunk), `recursive` (the same with at most 2 chunks per
page in the top k, the profile's setting), `structured` (sections and paragraphs, code kept whole, the
heading breadcrumb embedded and BM25-indexed; cap 2). Each change is measured on its own; `dense` vs
`hybrid` isolates the BM25 list. `recursive-nocap` reuses `recursive`'s collection. The per-question best
cosine similarity (answerable vs unanswerable) is kept for calibrating retrieval.min_relevance.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import CORPUS, EVAL, RESULTS, machine

REPO = Path(__file__).resolve().parents[1]
EVAL_FILES = {"dev": EVAL, "own": REPO / "eval" / "questions.jsonl"}
VARIANTS = {
    "walkthrough": {
        "RAGSERVE__INGEST__CHUNKER": "recursive",
        "RAGSERVE__INGEST__EMBED_TITLE": "false",
        "RAGSERVE__RETRIEVAL__MAX_CHUNKS_PER_SOURCE": "null",
    },
    "recursive-nocap": {
        "RAGSERVE__INGEST__CHUNKER": "recursive",
        "RAGSERVE__INGEST__EMBED_TITLE": "true",
        "RAGSERVE__RETRIEVAL__MAX_CHUNKS_PER_SOURCE": "null",
    },
    "recursive": {"RAGSERVE__INGEST__CHUNKER": "recursive", "RAGSERVE__INGEST__EMBED_TITLE": "true"},
    "structured": {"RAGSERVE__INGEST__CHUNKER": "structured", "RAGSERVE__INGEST__EMBED_TITLE": "true"},
}


def ragserve(home: Path, env: dict[str, str], *args: str) -> str:
    full = {**os.environ, "RAGSERVE_HOME": str(home), "RAGSERVE__RETRIEVAL__MIN_RELEVANCE": "null", **env}
    proc = subprocess.run(
        [sys.executable, "-m", "ragserve.cli", *args], env=full, capture_output=True, text=True, check=False
    )
    if proc.returncode not in (0, 1):
        raise SystemExit(f"ragserve {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--home", type=Path, default=Path("/tmp/ragserve-retrieval-eval"))
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--variants", default="walkthrough,recursive,recursive-nocap,structured")
    parser.add_argument("--reuse", action="store_true", help="skip ingestion of collections already there")
    parser.add_argument("--out", type=Path, default=RESULTS / "retrieval.json")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": machine(), "corpus": str(args.corpus), "k": args.k, "variants": {}}
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        collection = f"eval_{name.removesuffix('-nocap')}"
        env = {**VARIANTS[name], "RAGSERVE__STORE__COLLECTION": collection}
        entry: dict[str, Any] = {"settings": VARIANTS[name]}
        stats = json.loads(ragserve(args.home, env, "stats"))
        if not ((args.reuse or name.endswith("-nocap")) and stats["exists"]):
            started = time.perf_counter()
            entry["ingest"] = json.loads(
                ragserve(args.home, env, "ingest", str(args.corpus), "--rebuild", "--json")
            )
            entry["ingest_s"] = round(time.perf_counter() - started, 1)
        entry["chunks"] = json.loads(ragserve(args.home, env, "stats"))["chunks"]
        for set_name, path in EVAL_FILES.items():
            out = ragserve(
                args.home,
                env,
                "eval",
                str(path),
                "--k",
                str(args.k),
                "--compare",
                "dense,hybrid",
                "--json",
                "--details",
            )
            entry[set_name] = json.loads(out)["modes"]
        report["variants"][name] = entry
        for set_name in EVAL_FILES:
            for mode, r in entry[set_name].items():
                print(
                    f"{name:>11} {set_name:>3} {mode:>6}: hit@{args.k} {r['hit_rate_at_k']:.3f} "
                    f"recall@{args.k} {r['recall_at_k']:.3f} MRR {r['mrr']:.3f} nDCG {r['ndcg_at_k']:.3f} "
                    f"p50 {r['latency_ms']['p50']:.1f} ms",
                    flush=True,
                )
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
