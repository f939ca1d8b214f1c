"""OpenAI response pieces built from protocol results: logprobs in both formats, and usage over choices.

Pure functions, so the exact response shapes are tested without Ray.
"""

from __future__ import annotations

from collections.abc import Sequence

from lmops_runtime.protocol import TokenLogprob
from lmops_runtime.router.responses import ChatLogprobs, ChatTokenLogprob, CompletionLogprobs, TopTokenLogprob


def completion_logprobs(entries: Sequence[TokenLogprob], start_offset: int = 0) -> CompletionLogprobs:
    """Legacy completions ``logprobs``: parallel lists of tokens, their logprobs, ``{token: logprob}`` dicts
    of the alternatives (null where the logprob is, for an echoed prompt's first token) and text offsets.

    An offset is where the token's decoded text starts in the choice's text, counted from ``start_offset``
    (the length of token text already sent for this choice, when streaming); where one character spans
    several byte-level tokens each token's text is U+FFFD, so offsets after it are approximate.
    """
    offsets = []
    tops: list[dict[str, float] | None] = []
    position = start_offset
    for entry in entries:
        offsets.append(position)
        position += len(entry.token)
        if entry.top is None:
            tops.append(None)
            continue
        # Distinct tokens can decode to the same text (partial UTF-8 bytes all read U+FFFD); keep the
        # likeliest, which comes first.
        top: dict[str, float] = {}
        for alternative in entry.top:
            top.setdefault(alternative.token, alternative.logprob)
        tops.append(top)
    return CompletionLogprobs(
        tokens=[entry.token for entry in entries],
        token_logprobs=[entry.logprob for entry in entries],
        top_logprobs=tops,
        text_offset=offsets,
    )


def text_length(entries: Sequence[TokenLogprob]) -> int:
    """How far ``completion_logprobs`` offsets advance over these entries."""
    return sum(len(entry.token) for entry in entries)


def chat_logprobs(entries: Sequence[TokenLogprob]) -> ChatLogprobs:
    """Chat ``logprobs``: ``{"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}``
    (a chat reply has no prompt tokens, so every logprob is a number)."""
    content = [
        ChatTokenLogprob(
            token=entry.token,
            logprob=entry.logprob,
            bytes=entry.bytes,
            top_logprobs=[
                TopTokenLogprob(token=top.token, logprob=top.logprob, bytes=top.bytes)
                for top in entry.top or []
            ],
        )
        for entry in entries
    ]
    return ChatLogprobs(content=content)


def summed_usage(prompt_tokens: Sequence[int], completion_tokens: Sequence[int], n: int) -> tuple[int, int]:
    """(prompt, completion) tokens of a response whose choice ``i * n + j`` answers prompt ``i``.

    As OpenAI and vLLM count: each prompt once (its ``n`` choices share it), every choice's completion.
    """
    return sum(prompt_tokens[::n]), sum(completion_tokens)
