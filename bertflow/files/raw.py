"""Reading a user's raw text files, for everyone who reads them: converters,
corpora, ``bertflow annotate`` and its engines.

Lines are split on ``\n`` only; a line that can't be read becomes a problem
naming its line and byte offset, never an exception that ends the file.
UTF-8 (with or without a byte-order mark) is read as it is; a file that starts
with a UTF-16 or UTF-32 byte-order mark and is valid in it throughout is
decoded as it streams.
"""
import codecs
import io
import json
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Tuple, Union


JSON_SPACE = " \t\r\n"  # the whitespace JSON allows between values


def json_problem(err: "json.JSONDecodeError") -> str:
    """What is wrong with a line that is not JSON, for a message that names its line."""
    return f"invalid JSON: {err.msg} (column {err.colno})"


UTF16_32_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                 (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


class _Utf8Stream(io.RawIOBase):
    """A UTF-16/32 file read as UTF-8 bytes, decoded as it streams (the codec reads the byte-order mark)."""

    def __init__(self, raw: BinaryIO, encoding: str):
        self._raw = raw
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        self._pending, self._done = b"", False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending and not self._done:
            chunk = self._raw.read(1 << 16)
            self._done = not chunk
            self._pending = self._decoder.decode(chunk, final=self._done).encode("utf8")
        n = min(len(buffer), len(self._pending))
        buffer[:n], self._pending = self._pending[:n], self._pending[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _decodes_whole(raw: BinaryIO, encoding: str) -> bool:
    """Whether the whole file is valid ``encoding`` (one streaming pass, nothing kept)."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    try:
        for block in iter(lambda: raw.read(1 << 20), b""):
            decoder.decode(block)
        decoder.decode(b"", final=True)
        return True
    except UnicodeDecodeError:
        return False
    finally:
        raw.seek(0)


def open_utf8(path: Union[str, Path]) -> BinaryIO:
    """Open a text file for reading as UTF-8 bytes: a file that starts with a
    UTF-16 or UTF-32 byte-order mark and is valid in that encoding throughout
    is decoded as it is read; anything else is passed on as it is (a UTF-8
    byte-order mark is left for the reader, and a file that only looks like
    UTF-16 gets its undecodable rows reported one by one, as any non-UTF-8 row)."""
    raw = open(path, "rb")
    head = raw.read(4)
    raw.seek(0)
    for bom, encoding in UTF16_32_BOMS:
        if head.startswith(bom):
            if _decodes_whole(raw, encoding):
                return io.BufferedReader(_Utf8Stream(raw, encoding))
            break
    return raw


def text_lines(path: Union[str, Path]) -> Iterator[Tuple[int, Optional[str], Optional[str]]]:
    """Read a text file line by line: ``(line number, line, None)`` with the
    line ending removed (``\\n`` or ``\\r\\n``; lines are split on ``\\n``
    only; a leading byte-order mark is dropped), or ``(line number, None,
    problem)`` for a line that is not UTF-8, the problem naming the byte and
    its offset in the file, so one bad byte is one bad row with its line, not a
    traceback."""
    offset = 0
    with open_utf8(path) as f:
        for line_no, raw in enumerate(f, 1):
            start, offset = offset, offset + len(raw)
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw, start = raw[3:], start + 3
            try:
                line = raw.decode("utf8")
            except UnicodeDecodeError as err:
                yield line_no, None, (f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte offset "
                                      f"{start + err.start}); re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")
                continue
            if "\x00" in line:  # UTF-16/32 without a byte-order mark reads as text with NULs between letters
                yield line_no, None, ("holds NUL bytes: the file looks like UTF-16 or UTF-32 without a byte-order "
                                      "mark; re-save it as UTF-8 (e.g. iconv -f UTF-16LE -t UTF-8)")
                continue
            line = line[:-1] if line.endswith("\n") else line
            yield line_no, line[:-1] if line.endswith("\r") else line, None


def jsonl_rows(path: Union[str, Path]) -> Iterator[Tuple[int, Optional[dict], Optional[str]]]:
    """Read a JSONL file: ``(line number, object, None)`` per JSON object, or
    ``(line number, None, problem)`` for a line that is not UTF-8, not valid
    JSON or not an object; blank lines are skipped. Lines are split on ``\\n``
    only. Converters pass problems on to ``malformed_row`` so every error
    names file and line."""
    for line_no, line, problem in text_lines(path):
        if problem is not None:
            yield line_no, None, problem
            continue
        if not line.strip(JSON_SPACE):  # blank; a line of other whitespace (NBSP...) is a bad row, not skipped
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            yield line_no, None, json_problem(err)
            continue
        if not isinstance(obj, dict):
            yield line_no, None, f"expected a JSON object, got {type(obj).__name__}"
            continue
        yield line_no, obj, None
