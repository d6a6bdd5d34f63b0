"""Splitting long texts into overlapping chunks that end at natural boundaries."""

from __future__ import annotations

from arquivo.errors import ValidationError

__all__ = ["split_text"]

# Where a chunk may end, best first: a paragraph, a line, a sentence, a word.
_BOUNDARIES = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ")


def split_text(text: str, *, chunk_size: int = 1000, overlap: int = 200) -> list[str]:
    """Cut ``text`` into chunks of at most ``chunk_size`` characters.

    Each chunk after the first starts up to ``overlap`` characters before the previous
    one ended (so a sentence cut at a boundary is still whole in one of them). A chunk
    ends at the last paragraph, line, sentence or word boundary in its second half,
    else exactly at ``chunk_size``. Blank chunks are dropped; the others are stripped.

    Raises:
        ValidationError: ``chunk_size`` is below 1 or ``overlap`` is not in
            ``[0, chunk_size)``.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValidationError(f"chunk_size must be a positive integer, not {chunk_size!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < chunk_size:
        raise ValidationError(
            f"overlap must be an integer in [0, chunk_size={chunk_size}), not {overlap!r}",
            hint="e.g. chunk_size=1000, overlap=200",
        )
    chunks: list[str] = []
    start, length = 0, len(text)
    while start < length:
        end = min(start + chunk_size, length)
        if end < length:
            end = _boundary(text, start, end)
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end >= length:
            break
        # Step back by the overlap, but always move forward, and start on a word.
        next_start = max(end - overlap, start + 1)
        if overlap:
            space = text.find(" ", next_start, end)
            if space != -1:
                next_start = space + 1
        start = next_start
    return chunks


def _boundary(text: str, start: int, end: int) -> int:
    half = start + (end - start) // 2
    for mark in _BOUNDARIES:
        cut = text.rfind(mark, half, end)
        if cut != -1:
            return cut + len(mark)
    return end
