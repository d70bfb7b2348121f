"""A tiny Llama with random weights and a locally trained BPE tokenizer, for CPU vLLM runs (CI, laptops).

Nothing is downloaded: the config and weights come from ``transformers``, the tokenizer is trained with
``tokenizers`` on text that ships with this module, and the chat template follows Llama 3's format so the
prompt code path is the same as in production. The answers are gibberish; the serving path is real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragserve.generated import ensure_generated

# vLLM's CPU attention supports head sizes of 32..256 in steps of 16: keep head_dim = 64.
TINY_SPEC: dict[str, Any] = {
    "vocab_size": 2048,
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 4096,
}
SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
MARKER = "ragserve-tiny-llama.json"
_TRAINING_TEXT = """
Milvus is a vector database built for similarity search and retrieval augmented generation. A collection
holds entities with a primary key, scalar fields and vector fields. An index such as HNSW, IVF_FLAT or FLAT
speeds up approximate nearest neighbour search. HNSW builds a hierarchical navigable small world graph; its
parameters M and efConstruction control graph degree and build quality, and ef controls search breadth.
Consistency levels are Strong, Bounded, Session and Eventually. vLLM serves large language models with
paged attention and continuous batching. The answer uses the context when it is relevant and says so when
it is not. Question: What do the parameters mean? Answer: The parameters control recall and latency.
Grounding sources: reference/index.md userGuide/search.md. Ray Serve scales deployments with replicas.
0 1 2 3 4 5 6 7 8 9 10 100 1000 16384 512 1024 the a an of to in and or is are was be for with on by this
"""


def ensure_tiny_llama(cache_dir: Path) -> Path:
    """Return the model directory, generating it once (atomically, safe under concurrent callers)."""
    return ensure_generated(Path(cache_dir) / "tiny-llama", MARKER, _write_model)


def _write_model(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _train_tokenizer()
    tokenizer.save_pretrained(out)
    # The model's vocabulary is exactly the tokenizer's, so every sampled id decodes.
    config = LlamaConfig(
        **{**TINY_SPEC, "vocab_size": len(tokenizer)},
        bos_token_id=tokenizer.convert_tokens_to_ids("<|begin_of_text|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|eot_id|>"),
        tie_word_embeddings=False,
        dtype="float32",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    # Random logits are ~N(0, 1); zeroing the special tokens' output rows makes them practically never
    # sampled, so answers run to max_tokens instead of stopping at a random end-of-turn token.
    with torch.no_grad():
        for token in SPECIAL_TOKENS:
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(token)] = 0.0
    model.save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id}),
        encoding="utf-8",
    )
    (out / MARKER).write_text(json.dumps({"spec": TINY_SPEC, "generator": "ragserve"}), encoding="utf-8")


def _train_tokenizer():  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_SPEC["vocab_size"],
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([line for line in _TRAINING_TEXT.splitlines() if line.strip()] * 4, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
        model_max_length=TINY_SPEC["max_position_embeddings"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
