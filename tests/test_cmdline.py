"""fworker.cmdline: the linear splitter gives exactly what shlex.split gives."""
import random
import shlex
import time

import pytest

from fworker import cmdline

# Weighted towards the characters shlex treats specially, with some it treats
# as plain although a shell or str.split would not (vertical tab, NBSP, #, $).
ALPHABET = ["a", "b", "é", " ", " ", "\t", "\n", "\r", "'", "'", '"', '"', "\\", "\\",
            "\x0b", "\xa0", "#", "$", "\0", "-", "="]


def shlex_result(text):
    try:
        return "ok", shlex.split(text)
    except ValueError as ex:
        return type(ex).__name__, str(ex)


def our_result(text):
    try:
        return "ok", cmdline.split(text)
    except ValueError as ex:
        return type(ex).__name__, str(ex)


@pytest.mark.parametrize("seed", range(40))
def test_random_texts_split_as_shlex_does(seed):
    rng = random.Random(seed)
    for _ in range(1000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 24)))
        assert our_result(text) == shlex_result(text), f"seed {seed}: {text!r}"


@pytest.mark.parametrize("text", [
    "", "   ", "a", " a  b\tc\nd\re ", "''", "'' ''", 'a""b', "a'b c'd", '"a \\" b"', '"a\\b"', '"\\\\"',
    "a\\ b", "\\\n", "'\\'", "'a\\", '"abc\\', '"abc', "'abc", "abc\\", "a \\", '"a"\'b\'\\c', "--x='a b'",
])
def test_known_cases_split_as_shlex_does(text):
    assert our_result(text) == shlex_result(text)


def test_random_long_texts_split_as_shlex_does():
    """Longer texts (shlex is quadratic: a few KB each keeps this quick)."""
    rng = random.Random(12345)
    for _ in range(50):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(500, 3000)))
        assert our_result(text) == shlex_result(text)


def test_one_huge_argument_splits_in_linear_time():
    """10 MB as one argument: shlex takes ~30 s for 1 MB (quadratic).  The bound
    is ~50x the time measured on a loaded machine, so only quadratic work fails it."""
    text = "x" * (10 * 1024 * 1024)
    started = time.monotonic()
    assert cmdline.split(text) == [text]
    assert cmdline.split('"' + text + '"') == [text]
    with pytest.raises(ValueError, match="No closing quotation"):
        cmdline.split("'" + text)
    assert time.monotonic() - started < 10


def test_check_args_refuses_what_exec_would():
    assert cmdline.check_args(["ls", "-l"]) is None
    assert "number 2" in cmdline.check_args(["ls", "x" * (cmdline.MAX_ARG_BYTES + 1)])
    assert "number 2" in cmdline.check_args(["ls", "é" * (cmdline.MAX_ARG_BYTES // 2 + 1)])  # bytes, not characters
    assert "arguments taking" in cmdline.check_args(["x" * 1000] * (cmdline.ARG_MAX // 1000 + 1))


def test_shown_cuts_long_texts():
    assert cmdline.shown("abc") == "'abc'"
    shown = cmdline.shown("y" * 10_000_000)
    assert len(shown) < 300 and "10000000 characters" in shown


def test_split_for_exec_refuses_what_exec_would():
    assert cmdline.split_for_exec("ls -l 'a b'") == ["ls", "-l", "a b"]
    with pytest.raises(cmdline.ExecLimit, match=r"number 2.*cannot be given"):
        cmdline.split_for_exec("echo \ud800")  # a lone surrogate: no bytes for it
    with pytest.raises(cmdline.ExecLimit, match="arguments taking"):
        cmdline.split_for_exec("a " * (cmdline.ARG_MAX // 8))
    with pytest.raises(ValueError, match="No closing quotation") as raised:
        cmdline.split_for_exec("echo 'a")
    assert not isinstance(raised.value, cmdline.ExecLimit)


def test_check_args_refuses_a_nul():
    assert "number 3) with a NUL" in cmdline.check_args(["echo", "a", "b\0c"])
