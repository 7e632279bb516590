"""fworker.lines: the batch splitter gives exactly the careful splitter's lines."""
import random

import pytest

from fworker.lines import BatchSplitter, LineSplitter

# Pieces output is made of: every line end, UTF-8 of 2-4 bytes, bytes that are not
# UTF-8 (alone, and a character cut short right before a line end), long runs.
PIECES = [b"a", b"bc", b"\n", b"\r", b"\r\n", b"\n\r", "\u00e9".encode(), "\u20ac".encode(),
          "\U0001f600".encode(), b"\xff", b"\xe2\x82", b"\xf0\x9f\x98", b"x" * 9, b"y" * 40]


def careful(data: bytes, chunks: list[int], limit: int) -> list[str]:
    lines: list[str] = []
    splitter = LineSplitter(lines.append, limit)
    _feed(splitter, data, chunks)
    return lines


def batched(data: bytes, chunks: list[int], limit: int) -> tuple[list[str], list[list[str]]]:
    calls: list[list[str]] = []
    splitter = BatchSplitter(calls.append, limit)
    _feed(splitter, data, chunks)
    return [line for call in calls for line in call], calls


def _feed(splitter: LineSplitter, data: bytes, chunks: list[int]) -> None:
    start = 0
    for size in chunks:
        splitter.feed(data[start:start + size])
        start += size
    splitter.feed(data[start:])
    splitter.close()


@pytest.mark.parametrize("seed", range(300))
def test_batch_splitter_gives_the_careful_lines_whatever_the_output_and_chunking(seed):
    rng = random.Random(seed)
    data = b"".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 120)))
    chunks = [rng.randrange(1, 60) for _ in range(rng.randrange(0, 12))]
    limit = rng.choice([4, 5, 7, 16, 64, 65536])
    lines, calls = batched(data, chunks, limit)
    assert lines == careful(data, chunks, limit), (data, chunks, limit)
    assert all(calls), "no empty batches"


def test_one_chunk_of_many_lines_is_one_batch():
    data = b"".join(f"{i:07d} {'x' * 91}\n".encode() for i in range(650))
    lines, calls = batched(data, [len(data)], 65536)
    assert len(calls) == 1
    assert lines == [f"{i:07d} {'x' * 91}" for i in range(650)]


def test_a_trailing_cr_waits_for_the_next_chunk():
    lines, calls = batched(b"a\r\nb\r\nc\r\nd\r" + b"\ne\n", [11], 65536)
    assert lines == ["a", "b", "c", "d", "e"]  # not "d", "", "e"
    assert calls == [["a", "b", "c"], ["d", "e"]]


def test_a_line_longer_than_the_limit_comes_in_pieces_between_whole_lines():
    data = b"short\n" + "\u00e9".encode() * 10 + b"\nafter\n"
    lines, _ = batched(data, [len(data)], 7)
    assert lines == ["short", "\u00e9\u00e9\u00e9", "\u00e9\u00e9\u00e9", "\u00e9\u00e9\u00e9", "\u00e9", "after"]
    assert all(len(line.encode()) <= 7 for line in lines)


def test_bad_bytes_count_as_their_own_size_for_the_limit():
    # Four bad bytes make four U+FFFD (12 bytes of UTF-8) but are 4 bytes of output:
    # the line is within a limit of 4 and comes whole, as from the careful splitter.
    data = b"\xff\xfe\xfd\xfc\n"
    lines, _ = batched(data, [len(data)], 4)
    assert lines == ["\ufffd" * 4] == careful(data, [len(data)], 4)
