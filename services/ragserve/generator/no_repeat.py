"""No repeated n-grams in an answer: a vLLM logits processor over the generated tokens only.

A small model decoding greedily loops ("The max topk is 2.\\n\\nThe max topk is 2.\\n\\n..."). vLLM's
``repetition_penalty`` stops that but also counts the prompt's tokens, so it discourages copying the exact
names and numbers from the context that a grounded answer needs; ``frequency_penalty`` counts only the answer
but does not stop whole-sentence loops. This bans, at each step, every token that would complete an n-gram the
answer already holds (Hugging Face's ``no_repeat_ngram_size``, over the last ``window`` tokens of the answer):
a loop cannot start, and the prompt's text stays free to copy.

vLLM loads the processor (generator/no_repeat_processor.py, which imports vLLM; this module does not) by
its qualified name, engine argument ``logits_processors``; a request turns it on with
``SamplingParams.extra_args[NGRAM_ARG]`` (generator/engine.py sets it from
``generator.sampling.no_repeat_ngram_size``). Measured: load-tests/RESULTS.md, "Answer quality".
"""

from __future__ import annotations

PROCESSOR = "ragserve.generator.no_repeat_processor:NoRepeatNGram"
NGRAM_ARG = "ragserve_no_repeat_ngram"
WINDOW = 256  # answer tokens searched for earlier n-grams (answers are at most a few hundred tokens)


def banned_next(output_ids: list[int], n: int, window: int = WINDOW) -> set[int]:
    """Tokens that would repeat an n-gram of ``output_ids`` (its last ``window`` tokens) if generated next."""
    if n < 1 or len(output_ids) < n:
        return set()
    prefix = output_ids[len(output_ids) - n + 1 :]
    start = max(0, len(output_ids) - window)
    last = prefix[-1] if prefix else None
    return {
        output_ids[i + n - 1]
        for i in range(start, len(output_ids) - n + 1)
        if (last is None or output_ids[i + n - 2] == last) and output_ids[i : i + n - 1] == prefix
    }
