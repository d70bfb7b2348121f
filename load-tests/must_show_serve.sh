#!/usr/bin/env bash
# Reproduces the Serve figures in README.md: ingest the corpus, `ragserve serve` in the background, query it
# over HTTP and with the official openai client, then stop it. Usage: load-tests/must_show_serve.sh [CORPUS]
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${1:-$(python3 load-tests/harness.py corpus)}
export RAGSERVE_HOME=${RAGSERVE_HOME:-$(mktemp -d)}
R=.venv/bin/ragserve
PORT=${PORT:-8000}
$R ingest "$CORPUS"
$R serve --port "$PORT" > "$RAGSERVE_HOME/serve.log" 2>&1 &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 180); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 1
done
echo "== readyz: $(curl -s "http://127.0.0.1:$PORT/readyz")"
echo "== POST /v1/query"
curl -s "http://127.0.0.1:$PORT/v1/query" -H 'content-type: application/json' \
  -d '{"question": "What do the parameters for HNSW mean?", "top_k": 3}' | .venv/bin/python -c '
import json, sys
d = json.load(sys.stdin)
print(json.dumps({"answer_chars": len(d["answer"]), "sources": [s["source"] for s in d["sources"]],
                  "usage": d["usage"], "timings": d["timings"]}, indent=1))'
echo "== openai client"
.venv/bin/python - "$PORT" <<'PY'
import sys
from openai import OpenAI
client = OpenAI(base_url=f"http://127.0.0.1:{sys.argv[1]}/v1", api_key="none")
model = client.models.list().data[0].id
reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "What is HNSW?"}])
print(model, "->", len(reply.choices[0].message.content), "chars,", reply.usage)
PY
