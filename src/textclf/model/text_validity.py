"""Which texts can be classified: one rule, applied to training rows and to serving requests alike.

A text is **invalid** when

1. it holds an unpaired surrogate (``"\\ud800"``, which JSON escapes can produce): it is not valid
   Unicode, cannot be encoded as UTF-8, and no tokenizer takes it; or
2. it holds no *visible* character: nothing is left once these are removed:

   - whitespace (``str.isspace``: the separators Zs, Zl, Zp, and TAB, LF, CR, ...);
   - control, format, surrogate and private-use characters (categories Cc, Cf, Cs, Co): NUL and
     the other C0/C1 controls, zero-width space and joiners, bidirectional marks, the byte-order
     mark, soft hyphens, tags;
   - the other *default-ignorable* code points (Unicode's ``Default_Ignorable_Code_Point``:
     variation selectors, the combining grapheme joiner, Hangul fillers, ...), which are drawn as
     nothing; and the 66 noncharacters (U+FDD0..U+FDEF, U+xxFFFE, U+xxFFFF);
   - U+FFFD REPLACEMENT CHARACTER, which stands for bytes that were lost in decoding, not for a
     character.

Everything else is text: letters, marks, numbers, punctuation and symbols (emoji included) of any
script. Decisions, and why:

- A combining mark counts, even alone (``"\\u0301"``): marks are content in many scripts (Devanagari
  vowel signs, Arabic and Hebrew vowel points), and whether one survives is the model's tokenizer's
  business (an uncased BERT strips accents, a cased one keeps them). The rule does not depend on
  the model.
- Private-use characters (Co) do not count: they mean nothing outside a private agreement, and
  BERT's tokenizer drops them (its ``clean_text`` removes every "C" category), so the model would
  see an empty input.
- Unassigned code points (Cn, other than noncharacters) count: "unassigned" is relative to the
  Unicode version of this Python (3.11: Unicode 14), and a client's new emoji is not "nothing".
- The rule decides only whether there is something to classify; it never changes a text. A valid
  text reaches the tokenizer exactly as sent (NUL, zero-width joiners and all), and normalisation
  (Unicode forms, case, accents) is the tokenizer's, the same in training and serving.

``problem(text)`` says what is wrong as a phrase that follows the text's name ("is empty (only
whitespace)"), or ``None`` for a valid text. ``textclf.train.data`` prefixes it with the file, line
and column; ``textclf.serve.codecs`` with the record (``inputs[3]``, ``line 7``, ``row 2 text``).
"""

from __future__ import annotations

import unicodedata

# Default_Ignorable_Code_Point (DerivedCoreProperties.txt) outside categories Cc/Cf/Cs/Co, which the
# rule removes anyway: the marks and letters among them, and its reserved (Cn) ranges.
_DEFAULT_IGNORABLE = (
    (0x034F, 0x034F),  # COMBINING GRAPHEME JOINER (Mn)
    (0x115F, 0x1160),  # HANGUL CHOSEONG / JUNGSEONG FILLER (Lo)
    (0x17B4, 0x17B5),  # KHMER VOWEL INHERENT AQ / AA (Mn)
    (0x180B, 0x180F),  # MONGOLIAN FREE VARIATION SELECTORS, VOWEL SEPARATOR
    (0x2065, 0x2065),  # reserved
    (0x3164, 0x3164),  # HANGUL FILLER (Lo)
    (0xFE00, 0xFE0F),  # VARIATION SELECTOR-1..16 (Mn)
    (0xFFA0, 0xFFA0),  # HALFWIDTH HANGUL FILLER (Lo)
    (0xFFF0, 0xFFF8),  # reserved
    (0xE0000, 0xE0FFF),  # tags, VARIATION SELECTOR-17..256 and reserved
)
_REPLACEMENT = "\ufffd"
_CATEGORY_NAMES = {"Cc": "control", "Cf": "format", "Cs": "surrogate", "Co": "private use", "Cn": "unassigned"}
_SHOWN = 3  # invisible characters named in a message


def _noncharacter(code: int) -> bool:
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def _default_ignorable(code: int) -> bool:
    return any(low <= code <= high for low, high in _DEFAULT_IGNORABLE)


def is_visible(char: str) -> bool:
    """Whether one character counts as text (see the module docstring)."""
    category = unicodedata.category(char)
    code = ord(char)
    if category[0] in "LMNPS":  # letters, marks, numbers, punctuation, symbols
        return char != _REPLACEMENT and not _default_ignorable(code)
    if category == "Cn":
        return not _noncharacter(code) and not _default_ignorable(code)
    return False  # Cc, Cf, Cs, Co, and the separators Zs, Zl, Zp


def has_visible(text: str) -> bool:
    """Whether ``text`` holds at least one character that counts as text (ignores surrogates)."""
    stripped = text.strip()  # whitespace at the ends, at C speed
    if not stripped:
        return False
    # A usual text starts with a visible character; otherwise each distinct character is looked at
    # once (set() is C speed), so a body of a million NULs costs one lookup, not a million.
    return is_visible(stripped[0]) or any(is_visible(char) for char in set(stripped))


def _describe(char: str) -> str:
    name = unicodedata.name(char, "") or (
        "noncharacter" if _noncharacter(ord(char)) else _CATEGORY_NAMES.get(unicodedata.category(char), "")
    )
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


def problem(text: str) -> str | None:
    """Why ``text`` cannot be classified, as a phrase following its name, or ``None`` when it can.

    ``"is empty"``, ``"is empty (only whitespace)"``, ``"is empty (only invisible characters: U+0000
    control)"``, or ``"holds an unpaired surrogate \\ud800 at character 3: ..."``.
    """
    try:  # JSON's \ud800 escapes decode to lone surrogates, which no tokenizer or encoder takes
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"holds an unpaired surrogate \\u{ord(text[exc.start]):04x} at character {exc.start}: "
            "texts must be valid Unicode"
        )
    if not text:
        return "is empty"
    if has_visible(text):
        return None
    distinct = dict.fromkeys(text)  # in order of first use
    invisible = [char for char in distinct if not char.isspace()]
    if not invisible:
        return "is empty (only whitespace)"
    shown = ", ".join(_describe(char) for char in invisible[:_SHOWN])
    more = ", ..." if len(invisible) > _SHOWN else ""
    spaces = "whitespace and " if len(invisible) < len(distinct) else ""
    return f"is empty (only {spaces}invisible characters: {shown}{more})"
