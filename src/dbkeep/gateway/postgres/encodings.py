"""PostgreSQL client encodings ("Character Set Support") and the decoding of SQL text (pure).

SQL text is kept as bytes and decoded on demand in the session's ``client_encoding``, so a
statement guard never sees text the engine would read differently; an encoding without a
faithful Python codec decodes to None (callers fail closed). The MySQL counterpart is
``gateway/mysql/charsets.py``.
"""

from __future__ import annotations

import codecs

__all__ = ["decode_client_text", "python_codec"]

# PostgreSQL encoding names ("Character Set Support") to Python codecs. Only encodings with a
# faithful Python codec are listed; anything else decodes to None (callers fail closed).
_PG_CODECS = {
    "utf8": "utf-8",
    "unicode": "utf-8",
    "sqlascii": "latin-1",  # the server does not interpret high bytes; keep them 1:1
    "latin1": "latin-1",
    "latin2": "iso8859-2",
    "latin3": "iso8859-3",
    "latin4": "iso8859-4",
    "latin5": "iso8859-9",
    "latin6": "iso8859-10",
    "latin7": "iso8859-13",
    "latin8": "iso8859-14",
    "latin9": "iso8859-15",
    "latin10": "iso8859-16",
    "iso88595": "iso8859-5",
    "iso88596": "iso8859-6",
    "iso88597": "iso8859-7",
    "iso88598": "iso8859-8",
    "win1250": "cp1250",
    "win1251": "cp1251",
    "win1252": "cp1252",
    "win1253": "cp1253",
    "win1254": "cp1254",
    "win1255": "cp1255",
    "win1256": "cp1256",
    "win1257": "cp1257",
    "win1258": "cp1258",
    "win866": "cp866",
    "win874": "cp874",
    "koi8r": "koi8-r",
    "koi8u": "koi8-u",
    "eucjp": "euc_jp",
    "euccn": "gb2312",
    "euckr": "euc_kr",
    "eucjis2004": "euc_jis_2004",
    "sjis": "cp932",
    "shiftjis2004": "shift_jis_2004",
    "big5": "cp950",
    "gbk": "gbk",
    "gb18030": "gb18030",
    "uhc": "cp949",
    "johab": "johab",
}


def python_codec(pg_encoding: str) -> str | None:
    """The Python codec for a PostgreSQL encoding name (aliases and case as the server
    accepts them, e.g. ``utf-8``, ``UTF8``), or None when there is no faithful one."""
    key = "".join(ch for ch in pg_encoding.lower() if ch.isalnum())
    name = _PG_CODECS.get(key)
    if name is None:
        return None
    codecs.lookup(name)
    return name


def decode_client_text(data: bytes, pg_encoding: str) -> str | None:
    """``data`` decoded in the session's client encoding, or None if that is impossible
    (unknown encoding, invalid bytes): callers that guard statements must then refuse."""
    codec = python_codec(pg_encoding)
    if codec is None:
        return None
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        return None
