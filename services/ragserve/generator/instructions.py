"""Text inside a retrieved chunk that speaks to the model instead of the reader, taken out before the
prompt is built (``prompt.remove_instructions``).

Documents are written for people. A sentence that tells "the assistant" or "AI models" what to reply, asks
it to ignore its instructions, or carries a chat role marker (``System:``, ``[INST]``, ``<|im_start|>``) is
an injected instruction, not documentation: a small model obeys some of them however the prompt fences the
context (load-tests/RESULTS.md, "Instructions inside documents"). Each such sentence becomes
``REMOVED``; the rest of the chunk stays. What the patterns catch is a list, not an understanding: a
paraphrase they do not know passes (the held-out attacks in load-tests/injection.py measure how many).
The sources the API returns keep the chunk as stored; only the prompt's copy is changed.
"""

from __future__ import annotations

import re

REMOVED = "[an instruction to the assistant was removed here]"

_TO_THE_MODEL = re.compile(
    r"""
    \b(?:ignore|disregard|forget|override|bypass)\b [^.!?\n]{0,60}?
        \b(?:instructions?|prompts?|the\ question|the\ documentation|the\ context|everything
            |all\ (?:of\ )?the\ above)\b
  | \b(?:previous|prior|above|earlier)\ (?:instructions?|prompts?|messages?|rules)\b
  | \b(?:AI|artificial\ intelligence|language|chat)\ ?(?:models?|assistants?|systems?|bots?)\b [^.!?\n]{0,60}?
        \b(?:must|should|shall|are\ (?:required|instructed|told)\ to)\b
  | \b(?:LLMs?|chatbots?|the\ assistant|assistants?\ reading|models?\ reading)\b [^.!?\n]{0,60}?
        \b(?:must|should|shall|are\ (?:required|instructed|told)\ to)\b
  | \b(?:note|message|instructions?)\ (?:to|for)\ (?:the\ )?(?:AI|assistants?|models?|LLMs?|chatbots?)\b
  | (?:^|\n)\s*(?:system|assistant)\s*:\s+\w
  | \[/?INST\] | <<\s*/?SYS\s*>> | <\|\s*(?:im_start|im_end|system|user|assistant|eot_id|begin_of_text)\s*\|>
  | \b(?:reply|respond|answer)\ (?:only|solely|just)\ with\b
  | \byour\ (?:whole|only|entire)\ (?:reply|response|answer)\b
  | \b(?:instead\ of|rather\ than)\ (?:the|your|an?)\ (?:answer|reply|response)\b
  | \b(?:only|correct)\ (?:valid\ |correct\ )?(?:response|reply|answer)\ (?:is|to)\b
  | \bthe\ user\ (?:has\ changed|now\ (?:only\ )?wants|actually\ wants|wants\ you)\b
  | \#{1,6}\ *new\ (?:task|instructions?)\b
    """,
    re.IGNORECASE | re.VERBOSE,
)
# A turn in a chat template's markup, opening to closing marker (or the end), goes whole; so does a fake
# "### New task" heading with the line after it.
_TURN = re.compile(
    r"\[INST\].*?(?:\[/INST\]|$)|<<\s*SYS\s*>>.*?(?:<<\s*/SYS\s*>>|$)|<\|\s*im_start\s*\|>.*?(?:<\|\s*im_end\s*\|>|$)"
    r"|\#{1,6}\ *new\ (?:task|instructions?)\b[^\n]*(?:\n[^\n]*)?",  # a fake heading and the line after it
    re.IGNORECASE | re.DOTALL,
)
# A sentence ends at . ! ? followed by space, or at a line break; role markers are cut out with their line.
_SENTENCES = re.compile(r"[^\n]*?(?:[.!?](?=\s)|\n|$)")


def remove_instructions(text: str) -> tuple[str, int]:
    """``text`` with every sentence that addresses the model replaced by ``REMOVED`` (one marker for a run
    of them), and how many sentences went."""
    if not _TO_THE_MODEL.search(text):
        return text, 0
    text, removed = _TURN.subn(REMOVED + ".", text)
    out: list[str] = []
    for m in _SENTENCES.finditer(text):
        sentence = m.group(0)
        if not sentence:
            continue
        turn = REMOVED in sentence  # a chat-markup turn, counted by subn above
        if turn or _TO_THE_MODEL.search(sentence):
            removed += 0 if turn else 1
            if not out or out[-1].strip() != REMOVED:
                out.append((" " if out and not out[-1].endswith(("\n", " ")) else "") + REMOVED)
            if sentence.endswith("\n"):
                out.append("\n")
            continue
        out.append(sentence)
    return "".join(out), removed
