"""Text files in legacy encodings, built from strings (standard library only, so Open WebUI's
venv can import this file too): the bytes a user's old upload may hold."""

from __future__ import annotations

CHINESE = "人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心，并应以兄弟关系的精神相对待。"
TRADITIONAL = (
    "人人生而自由，在尊嚴和權利上一律平等。他們賦有理性和良心，並應以兄弟關係的精神相對待。"
)
JAPANESE = "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。"
KOREAN = "모든 인간은 태어날 때부터 자유로우며 그 존엄과 권리에 있어 동등하다."
RUSSIAN = "Все люди рождаются свободными и равными в своем достоинстве и правах."
ENGLISH = "\u201cWe hold these truths to be self-evident,\u201d they wrote \u2014 and meant it."


def samples() -> dict[str, bytes]:
    """name -> bytes; each text repeated so chardet has enough to read."""
    return {
        "gb18030_chinese": (CHINESE * 8).encode("gb18030"),
        "big5_traditional": (TRADITIONAL * 8).encode("big5"),
        "shift_jis_japanese": (JAPANESE * 8).encode("shift_jis"),
        "euc_kr_korean": (KOREAN * 8).encode("euc-kr"),
        "cp1251_russian": (RUSSIAN * 8).encode("cp1251"),
        "cp1252_english": (ENGLISH * 8).encode("cp1252"),
        "mixed_utf8_then_gbk": ("plain ascii line\n" * 40).encode() + (CHINESE * 4).encode("gbk"),
        "stray_byte_far_from_text": b"a" * 300_000 + b"\xe9" + ("caf\xe9 " * 40).encode("latin-1"),
        "utf8_chinese": (CHINESE * 4).encode("utf-8"),
    }
