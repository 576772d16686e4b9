"""Splitting streamed text into events the server accepts (pure logic, no I/O)."""

from __future__ import annotations

import json

# A single character takes at most this many bytes as JSON (a \\uXXXX escape).
MAX_CHAR_BYTES = 6
MIN_LIMIT = 2 * MAX_CHAR_BYTES


def json_size(text: str) -> int:
    """Bytes ``text`` takes in an event as the server stores it (UTF-8 JSON, no quotes)."""
    encoded = json.dumps(text, ensure_ascii=False)
    return (len(encoded) if encoded.isascii() else len(encoded.encode())) - 2


def split_text(text: str, limit: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` bytes each as JSON, joined they are ``text``.

    Pieces are cut between characters (code points), never inside one, so each piece is valid
    text on its own and its escapes stay whole.
    """
    if limit < MIN_LIMIT:
        raise ValueError(f"limit must be at least {MIN_LIMIT} bytes")
    if len(text) * MAX_CHAR_BYTES <= limit or json_size(text) <= limit:
        return [text]
    pieces = []
    start = 0
    while start < len(text):
        end = min(len(text), start + limit)  # a character takes at least one byte
        size = json_size(text[start:end])
        while size > limit:
            # Shrink in proportion (a bit more, so it rarely takes a second try); the piece
            # gets shorter every time and one character always fits.
            end = start + max(1, (end - start) * limit // size - 1)
            size = json_size(text[start:end])
        pieces.append(text[start:end])
        start = end
    return pieces
