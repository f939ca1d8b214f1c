"""Incremental detokenization and stop-sequence matching for streamed generation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_INCOMPLETE = "\ufffd"
#: A UTF-8 character is at most four bytes and a byte-level token carries at least one, so a character still
#: undecodable with this many tokens after its start never will be.
_MAX_HELD_TOKENS = 4


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas without re-decoding everything each step.

    A token can end in the middle of a multi-byte character (byte-level tokenizers do this all the time),
    and some tokenizers change a token's spacing depending on its left neighbour. So each step decodes a
    small window starting a little before the new tokens and emits only what the window adds, once it no
    longer ends in a replacement character. Bytes that can never complete a character (a model can emit
    those) go out as U+FFFD after a short hold, so a stream never stalls on them until the end.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._tokens: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def _decode(self, tokens: Sequence[int]) -> str:
        return str(self._tokenizer.decode(tokens, skip_special_tokens=True))

    def add(self, new_tokens: Sequence[int]) -> str:
        """Append tokens and return the text they complete (possibly empty)."""
        self._tokens.extend(new_tokens)
        prefix = self._decode(self._tokens[self._prefix_offset : self._read_offset])
        text = self._decode(self._tokens[self._prefix_offset :])
        if len(text) > len(prefix) and not text.endswith(_INCOMPLETE):
            return self._advance(len(self._tokens), text[len(prefix) :])
        if len(self._tokens) - self._read_offset < _MAX_HELD_TOKENS:
            return ""
        # Only the last few tokens can still be the start of a character: emit everything before them.
        end = len(self._tokens) - (_MAX_HELD_TOKENS - 1)
        text = self._decode(self._tokens[self._prefix_offset : end])
        return self._advance(end, text[len(prefix) :]) if len(text) > len(prefix) else ""

    def _advance(self, read_to: int, delta: str) -> str:
        self._prefix_offset, self._read_offset = self._read_offset, read_to
        return delta

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end decodes as U+FFFD)."""
        prefix = self._decode(self._tokens[self._prefix_offset : self._read_offset])
        text = self._decode(self._tokens[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._tokens)
        return text[len(prefix) :]


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Text before the earliest stop sequence, and whether one was found."""
    positions = [index for stop in stops if (index := text.find(stop)) >= 0]
    if not positions:
        return text, False
    return text[: min(positions)], True


class StopMatcher:
    """Streams text through while holding back any tail that could still become a stop sequence."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(stops)
        self._pending = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        """Return the text that is safe to emit; after a stop sequence is seen, nothing more."""
        if self.stopped:
            return ""
        self._pending += delta
        if not self._stops:
            emitted, self._pending = self._pending, ""
            return emitted
        before, found = cut_at_stop(self._pending, self._stops)
        if found:
            self.stopped = True
            self._pending = ""
            return before
        hold = self._holdback(self._pending)
        emitted = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(emitted) :]
        return emitted

    def flush(self) -> str:
        emitted, self._pending = ("" if self.stopped else self._pending), ""
        return emitted

    def _holdback(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of some stop sequence."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest
