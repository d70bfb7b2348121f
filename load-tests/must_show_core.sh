#!/usr/bin/env bash
# Reproduces the core-pipeline figures in README.md on the Milvus docs corpus (a private copy, so one file
# can be edited). Usage: load-tests/must_show_core.sh [CORPUS_DIR] [EVAL_FILE]
set -uo pipefail
cd "$(dirname "$0")/.."
CORPUS=${1:-$(python3 load-tests/harness.py corpus)}
EVAL=${2:-$(python3 load-tests/harness.py eval)}
WORK=$(mktemp -d)
export RAGSERVE_HOME="$WORK/home"
R=.venv/bin/ragserve
cp -r "$CORPUS" "$WORK/en"
echo "== machine: $(nproc) cores, $(python3 -c 'import platform;print(platform.processor() or platform.machine())')"
echo "== first ingest";          $R ingest "$WORK/en"
echo "== eval";                  $R eval "$EVAL" --k 5 --json
echo "== second identical ingest"; $R ingest "$WORK/en"
echo "== edit reference/index.md, ingest again"
printf '\n\nAn extra paragraph appended for the idempotency check.\n' >> "$WORK/en/reference/index.md"
$R ingest "$WORK/en" --json
echo "== query";                 $R query "What do the parameters for HNSW mean?" --json | python3 -c '
import json,sys; d=json.load(sys.stdin); print(json.dumps({"answer_chars": len(d["answer"]), "sources": [(s["source"], s["score"]) for s in d["sources"]], "usage": d["usage"], "timings": d["timings"]}, indent=1))'
echo "== bad input"
mkdir -p "$WORK/empty" "$WORK/bad"; printf '\x00\x01\x02' > "$WORK/bad/blob.txt"; printf 'caf\xe9' > "$WORK/bad/latin1.txt"
$R ingest "$WORK/empty"; echo "exit=$?"
$R ingest "$WORK/bad/blob.txt"; echo "exit=$?"
$R ingest "$WORK/bad/latin1.txt"; echo "exit=$?"
$R query ""; echo "exit=$?"
echo "== stats after bad input"; $R stats
rm -rf "$WORK"
