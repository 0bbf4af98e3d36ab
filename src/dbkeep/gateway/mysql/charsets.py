"""Collation ids of the MySQL/MariaDB protocol and how to decode text sent in them.

Theory of operation
-------------------
The handshake response carries the client's collation as ``int<1>`` and COM_CHANGE_USER as
``int<2>`` (MariaDB KB "Connection", "COM_CHANGE_USER"). The server decodes user names and
statement text in that collation's character set, so the gateway must decode the same bytes
the same way before the guard looks at them: a statement decoded differently from how the
engine reads it is a parser differential (the classic case is a multi-byte character whose
second byte is ``0x5C``, a backslash, in big5/cp932/gbk/sjis).

The id -> character set table below is MariaDB 10.11's ``information_schema.COLLATIONS``.
Character sets map to a Python codec; MySQL's ``latin1`` is Windows-1252 with the five bytes
that cp1252 leaves undefined mapped to the same code points (as MySQL does), implemented as a
translation of Python's byte-preserving ``latin-1``. Decoding never fails: bytes that are not
valid in the character set become lone surrogates (``surrogateescape``), so the text still
round-trips to the exact bytes. ``exact`` is False for ids whose character set has no faithful
Python codec (dec8, hp8, swe7, keybcs2, armscii8, geostd8, the UCS/UTF-16/32 sets, which
MariaDB refuses as a client character set anyway, and unknown ids); their text is decoded
byte-for-byte (``latin-1``) and callers that need certainty should treat it as suspect.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CHARSET_OF_COLLATION", "DEFAULT_COLLATION", "TextCodec", "codec_for", "decode"]

# character set -> collation ids (MariaDB 10.11 information_schema.COLLATIONS)
_COLLATIONS: dict[str, tuple[int | range, ...]] = {
    "armscii8": (32, 64, 1056, 1088),
    "ascii": (11, 65, 1035, 1089),
    "big5": (1, 84, 1025, 1108),
    "binary": (63,),
    "cp1250": (26, 34, 44, 66, 99, 1050, 1090),
    "cp1251": (14, 23, range(50, 53), range(1074, 1076)),
    "cp1256": (57, 67, 1081, 1091),
    "cp1257": (29, range(58, 60), range(1082, 1084)),
    "cp850": (4, 80, 1028, 1104),
    "cp852": (40, 81, 1064, 1105),
    "cp866": (36, 68, 1060, 1092),
    "cp932": (range(95, 97), range(1119, 1121)),
    "dec8": (3, 69, 1027, 1093),
    "eucjpms": (range(97, 99), range(1121, 1123)),
    "euckr": (19, 85, 1043, 1109),
    "gb2312": (24, 86, 1048, 1110),
    "gbk": (28, 87, 1052, 1111),
    "geostd8": (range(92, 94), range(1116, 1118)),
    "greek": (25, 70, 1049, 1094),
    "hebrew": (16, 71, 1040, 1095),
    "hp8": (6, 72, 1030, 1096),
    "keybcs2": (37, 73, 1061, 1097),
    "koi8r": (7, 74, 1031, 1098),
    "koi8u": (22, 75, 1046, 1099),
    "latin1": (5, 8, 15, 31, range(47, 50), 94, 1032, 1071),
    "latin2": (2, 9, 21, 27, 77, 1033, 1101),
    "latin5": (30, 78, 1054, 1102),
    "latin7": (20, range(41, 43), 79, 1065, 1103),
    "macce": (38, 43, 1062, 1067),
    "macroman": (39, 53, 1063, 1077),
    "sjis": (13, 88, 1037, 1112),
    "swe7": (10, 82, 1034, 1106),
    "tis620": (18, 89, 1042, 1113),
    "ucs2": (35, 90, range(128, 152), 159, range(640, 643), 1059, 1114, 1152, 1174),
    "ujis": (12, 91, 1036, 1115),
    "utf16": (range(54, 56), range(101, 125), range(672, 675), range(1078, 1080), 1125, 1147),
    "utf16le": (56, 62, 1080, 1086),
    "utf32": (range(60, 62), range(160, 184), range(736, 739), range(1084, 1086), 1184, 1206),
    "utf8mb3": (33, 83, range(192, 216), 223, range(576, 579), 1057, 1107, 1216, 1238),
    "utf8mb4": (range(45, 47), range(224, 248), range(608, 611), range(1069, 1071), 1248, 1270),
}


def _expand() -> dict[int, str]:
    table: dict[int, str] = {}
    for name, ids in _COLLATIONS.items():
        for item in ids:
            for cid in item if isinstance(item, range) else (item,):
                table[cid] = name
    return table


CHARSET_OF_COLLATION: dict[int, str] = _expand()

# character set -> its default collation id (for SET NAMES tracking by callers); "utf8" is
# MariaDB's alias of utf8mb3 (with the default old_mode).
DEFAULT_COLLATION: dict[str, int] = {
    "armscii8": 32, "ascii": 11, "big5": 1, "binary": 63, "cp1250": 26, "cp1251": 51,
    "cp1256": 57, "cp1257": 59, "cp850": 4, "cp852": 40, "cp866": 36, "cp932": 95, "dec8": 3,
    "eucjpms": 97, "euckr": 19, "gb2312": 24, "gbk": 28, "geostd8": 92, "greek": 25,
    "hebrew": 16, "hp8": 6, "keybcs2": 37, "koi8r": 7, "koi8u": 22, "latin1": 8, "latin2": 9,
    "latin5": 30, "latin7": 41, "macce": 38, "macroman": 39, "sjis": 13, "swe7": 10,
    "tis620": 18, "ucs2": 35, "ujis": 12, "utf16": 54, "utf16le": 56, "utf32": 60,
    "utf8mb3": 33, "utf8": 33, "utf8mb4": 45,
}

# character set -> Python codec; None: no faithful codec (decoded byte-for-byte, inexact)
_PY_CODEC: dict[str, str | None] = {
    "ascii": "ascii",
    "big5": "big5",
    "binary": "latin-1",  # bytes are bytes: byte-for-byte is exact
    "cp1250": "cp1250",
    "cp1251": "cp1251",
    "cp1256": "cp1256",
    "cp1257": "cp1257",
    "cp850": "cp850",
    "cp852": "cp852",
    "cp866": "cp866",
    "cp932": "cp932",
    "eucjpms": "euc_jis_2004",
    "euckr": "euc_kr",
    "gb2312": "gb2312",
    "gbk": "gbk",
    "greek": "iso8859_7",
    "hebrew": "iso8859_8",
    "koi8r": "koi8_r",
    "koi8u": "koi8_u",
    "latin1": "mysql-latin1",
    "latin2": "iso8859_2",
    "latin5": "iso8859_9",
    "latin7": "iso8859_13",
    "macce": "mac_latin2",
    "macroman": "mac_roman",
    "sjis": "shift_jis",
    "tis620": "tis_620",
    "ujis": "euc_jp",
    "utf8mb3": "utf-8",
    "utf8mb4": "utf-8",
}

# MySQL latin1 is cp1252 except that 0x81, 0x8D, 0x8F, 0x90, 0x9D keep their own code points.
_CP1252_HIGH = bytes(range(0x80, 0xA0)).decode("cp1252", errors="replace")
_LATIN1_TO_MYSQL = {
    0x80 + i: (ch if ch != "\ufffd" else chr(0x80 + i)) for i, ch in enumerate(_CP1252_HIGH)
}


@dataclass(frozen=True, slots=True)
class TextCodec:
    """How text in one collation is decoded: ``charset`` name, Python ``codec``, ``exact``."""

    collation_id: int
    charset: str
    codec: str
    exact: bool

    def decode(self, data: bytes | bytearray | memoryview) -> str:
        raw = bytes(data)
        if self.codec == "mysql-latin1":
            return raw.decode("latin-1").translate(_LATIN1_TO_MYSQL)
        return raw.decode(self.codec, errors="surrogateescape")


def codec_for(collation_id: int) -> TextCodec:
    charset = CHARSET_OF_COLLATION.get(collation_id, "unknown")
    codec = _PY_CODEC.get(charset)
    if codec is None:
        return TextCodec(collation_id, charset, "latin-1", exact=False)
    return TextCodec(collation_id, charset, codec, exact=True)


def decode(data: bytes | bytearray | memoryview, collation_id: int) -> str:
    return codec_for(collation_id).decode(data)


def decode_charset(data: bytes | bytearray | memoryview, charset: str) -> str | None:
    """``data`` decoded as MariaDB's character set ``charset`` (a name), or None when it has no
    exact Python codec or the bytes are not valid in it."""
    codec = _PY_CODEC.get(charset.lower())
    if codec is None:
        return None
    raw = bytes(data)
    if codec == "mysql-latin1":
        return raw.decode("latin-1").translate(_LATIN1_TO_MYSQL)
    try:
        return raw.decode(codec, errors="strict")
    except (UnicodeDecodeError, LookupError):
        return None
