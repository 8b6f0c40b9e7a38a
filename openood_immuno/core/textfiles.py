"""Reading a user's UTF-8 text file (an antibody bank, a negative label list) with errors that
name the file and what is wrong with it: a folder instead of a file, UTF-16, or another 8-bit
encoding such as Latin-1, each with the command that fixes it."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def read_utf8_file(path: str | Path, what: str, hint: str) -> str:
    """The text of ``path`` (``what`` names it in messages: ``"antibody bank"``).

    Raises FileNotFoundError when it does not exist (``hint`` says how to make one), and
    ValueError, one line naming the file, when it is a directory, UTF-16 (BOM, or NUL bytes in its
    first 4 KiB) or not UTF-8 (the first bad byte and its line; Latin-1 suspected). A UTF-8 BOM
    is dropped with a warning.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a directory, not a file: pass the file itself; {hint}")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist; {hint}")
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw[:4096]:
        raise ValueError(f"{what} {str(path)!r} is UTF-16, not UTF-8: convert it with "
                         f"`iconv -f UTF-16 -t UTF-8 {path} > {path}.utf8` and use that file")
    if raw.startswith(b"\xef\xbb\xbf"):
        log.warning("%s %s starts with a UTF-8 byte-order mark; it is ignored", what, path)
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = raw[:exc.start].count(b"\n") + 1
        raise ValueError(f"{what} {str(path)!r}, line {lineno}: not UTF-8 (byte 0x{raw[exc.start]:02x}; "
                         f"Latin-1?): convert it with `iconv -f LATIN1 -t UTF-8 {path} > {path}.utf8`"
                         ) from None
