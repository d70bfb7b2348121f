"""The vLLM logits processor of generator/no_repeat.py's rule (apart, so that importing the rule imports
no vLLM)."""

from __future__ import annotations

from typing import Any

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from ragserve.generator.no_repeat import NGRAM_ARG, banned_next


class _PerRequest:
    def __init__(self, n: int):
        self.n = n

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        banned = banned_next(output_ids, self.n)
        if banned:
            logits[list(banned)] = -float("inf")
        return logits


class NoRepeatNGram(AdapterLogitsProcessor):
    """Per request: on when ``extra_args`` names an n-gram size."""

    @classmethod
    def validate_params(cls, params: Any) -> None:
        n = (params.extra_args or {}).get(NGRAM_ARG)
        if n is not None and (not isinstance(n, int) or n < 1):
            raise ValueError(f"{NGRAM_ARG} must be a positive integer, got {n!r}")

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token is greedy's

    def new_req_logits_processor(self, params: Any) -> _PerRequest | None:
        n = (params.extra_args or {}).get(NGRAM_ARG)
        return _PerRequest(n) if n else None
