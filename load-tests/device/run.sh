#!/usr/bin/env bash
# On the leased machine, from the repo root. Each call brings one or more parts (device/pack.sh) in
# PARTS_DIR and stores them under /tmp/parts (a warm machine keeps them between calls); the call that says
# `run` checks them all, unpacks them, starts the generator alone once (smoke.py: a clear error in seconds
# rather than a failed Serve deployment minutes later), then runs `bench_gpu.py overhead` into $OUT.
#
#   bash load-tests/device/run.sh PARTS_DIR          # store the parts carried in this call
#   bash load-tests/device/run.sh PARTS_DIR run      # ... and run (the last call also carries sums.txt)
#
# The data travels as the checkout's shared/ folder (git-excluded here): a copy of ../shared/eval and of
# ../shared/corpus/milvus-docs/site/en/reference under the same paths.
set -uo pipefail
PARTS=${1:?usage: run.sh PARTS_DIR [run]}
mkdir -p /tmp/parts
cp "$PARTS"/* /tmp/parts/ 2>/dev/null
ls -l /tmp/parts | tail -n +2
[ "${2:-}" = "run" ] || exit 0
(cd /tmp/parts && sha256sum -c sums.txt) || { echo "parts missing or corrupt: the machine went cold?"; exit 3; }
mkdir -p /tmp/site && cat /tmp/parts/part.* | xz -d -T0 | tar -x -C /tmp/site || exit 4
export PYTHONPATH=/tmp/site:$PWD/services:$PWD/load-tests PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export RAGSERVE_HOME=/tmp/ragserve-home RAGSERVE_SHARED=$PWD/shared  # shared/: corpus + eval, carried
# pack.sh leaves flashinfer out. For the short lease: eager engines start faster (both sides run the same
# engine arguments), and the Embedder pool starts at its autoscaled maximum.
export VLLM_USE_FLASHINFER_SAMPLER=0 RAGSERVE__GENERATOR__ENFORCE_EAGER=${EAGER:-true}
export RAGSERVE__EMBEDDER__DEPLOYMENT__AUTOSCALING_CONFIG__MIN_REPLICAS=2
timeout 200 python3 load-tests/device/smoke.py > "$OUT/smoke.log" 2>&1
grep -q "SMOKE OK" "$OUT/smoke.log" || { grep -v Warning "$OUT/smoke.log" | tail -60; exit 6; }
(cd load-tests && timeout "${BUDGET_S:-450}" python3 bench_gpu.py overhead --out "$OUT/overhead-gpu.json") \
  > "$OUT/overhead-gpu.log" 2>&1
echo "rc=$?"
grep -v "WARNING\|Warning\|^(" "$OUT/overhead-gpu.log" | tail -80
cp load-tests/results/vllm-server.log "$OUT/" 2>/dev/null
tar -czf "$OUT/raylogs.tgz" -C /tmp/ray/session_latest logs 2>/dev/null
