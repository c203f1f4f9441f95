"""One xmlschema validation error of an invoice, told in plain words for the person who fixes it.

Recognises the errors people actually make (dates, numbers, codes, missing or extra elements, lengths
and the FatturaPA patterns) and says what the value must look like; anything else keeps xmlschema's
reason with the library's internals cut out. Pure: reads the error's attributes, imports no xmlschema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["explain", "position_element"]

_MAX_CODES = 30
_MAX_SHOWN = 40

_BUILTIN_WORDS = {
    "date": "is not a date: write it as year-month-day, YYYY-MM-DD (e.g. 2024-01-31), and "
    "check that the day exists in that month",
    "dateTime": "is not a date and time: write it as YYYY-MM-DDThh:mm:ss (e.g. 2024-01-31T09:30:00)",
    "time": "is not a time: write it as hh:mm:ss (e.g. 09:30:00)",
    "gYear": "is not a year: write 4 digits (e.g. 2024)",
    "decimal": "is not a number: use a dot before the decimals (not a comma) and no thousands "
    "separator, e.g. 1234.50",
    "integer": "is not a whole number: write digits only",
    "int": "is not a whole number: write digits only",
    "long": "is not a whole number: write digits only",
    "positiveInteger": "is not a whole number above 0: write digits only",
    "nonNegativeInteger": "is not a whole number: write digits only",
    "boolean": "is not a yes/no value: write true or false",
}

_FACET_WORDS: dict[str, Callable[[str, Any], str]] = {
    "XsdLengthFacet": lambda v, n: f"has {len(v)} character(s); it must have exactly {n}",
    "XsdMinLengthFacet": lambda v, n: f"has {len(v)} character(s); it must have at least {n}",
    "XsdMaxLengthFacet": lambda v, n: f"has {len(v)} character(s); it must have at most {n}",
    "XsdMinInclusiveFacet": lambda v, n: f"is too small: it must be {n} or more",
    "XsdMaxInclusiveFacet": lambda v, n: f"is too large: it must be {n} or less",
    "XsdMinExclusiveFacet": lambda v, n: f"is too small: it must be more than {n}",
    "XsdMaxExclusiveFacet": lambda v, n: f"is too large: it must be less than {n}",
    "XsdTotalDigitsFacet": lambda v, n: f"has too many digits: at most {n} in all",
    "XsdFractionDigitsFacet": lambda v, n: f"has too many decimals: at most {n}",
}

_BASIC_LATIN = (
    "only plain letters, digits and common symbols (ASCII): no accented letters, no € or °"
)
_LATIN_1 = "Latin letters (accents allowed) and common symbols, but no € sign"


def _amount(found: re.Match[str]) -> str:
    lowest, highest = found.group(3), found.group(4)
    decimals = lowest if highest is None else f"{lowest} to {highest}"
    sign = "an optional minus sign, " if found.group(1) else ""
    return (
        f"write {sign}up to {found.group(2)} digits, a dot (not a comma) and {decimals} decimal(s), "
        "with no thousands separator and no currency sign, e.g. 1234.50"
    )


def _span(low: str, high: str | None) -> str:
    return low if high is None or high == low else f"{low} to {high}"


_PATTERN_WORDS: Sequence[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = (
    (re.compile(r"(\[\\-\]\?)?\[0-9\]\{1,(\d+)\}\\\.\[0-9\]\{(\d+)(?:,(\d+))?\}"), _amount),
    (
        re.compile(r"\(?\\p\{IsBasicLatin\}\{(\d+),(\d+)\}\)?"),
        lambda m: f"write {_span(m[1], m[2])} characters, {_BASIC_LATIN}",
    ),
    (
        re.compile(r"\[\\p\{IsBasicLatin\}\\p\{IsLatin-1Supplement\}\]\{(\d+),(\d+)\}"),
        lambda m: f"write {_span(m[1], m[2])} characters: {_LATIN_1}",
    ),
    (re.compile(r"\[A-Z\]\{(\d+)\}"), lambda m: f"write {m[1]} capital letters (e.g. IT, EUR)"),
    (
        re.compile(r"\[A-Z0-9\]\{(\d+)(?:,(\d+))?\}"),
        lambda m: f"write {_span(m[1], m[2])} capital letters or digits, no spaces",
    ),
    (re.compile(r"(?:\[0-9\])+"), lambda m: f"write exactly {m[0].count('[0-9]')} digits"),
    (re.compile(r".*@.*"), lambda m: "write one e-mail address (name@example.it)"),
)


def explain(error: Any) -> str:
    """``path: what is wrong`` for one xmlschema validation error (never raises on odd errors)."""
    path = getattr(error, "path", None) or "the document"
    words = _children(error) or _value(error) or _fallback(error)
    return f"{path}: {words}"


def position_element(error: Any) -> Any:
    """The element to point at: the offending child when the error is about one, else the element."""
    child = getattr(error, "invalid_child", None)
    return child if child is not None else getattr(error, "elem", None)


# ---- missing, unexpected or misplaced elements -------------------------------------------------


def _local(name: object) -> str:
    text = str(name)
    return text.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _expected(error: Any) -> str | None:
    names = [getattr(item, "name", None) for item in getattr(error, "expected", None) or ()]
    shown = [f"<{_local(name)}>" for name in names if name]
    return " or ".join(shown) or None


def _children(error: Any) -> str | None:
    if not hasattr(error, "invalid_tag"):
        return None
    tag, expected = getattr(error, "invalid_tag", None), _expected(error)
    if tag is None:
        if expected is None:
            return None
        return f"{expected} is missing (it must come at the end of this element)"
    here = f"<{_local(tag)}> is not allowed here"
    if expected is None:
        return f"{here}: it is unknown, misspelt, or one too many"
    return f"{here}: {expected} must come at this point (missing, or elements in the wrong order)"


# ---- wrong values ------------------------------------------------------------------------------


def _shown(value: object) -> str:
    text = str(value)
    if not text:
        return "the empty value"
    return repr(text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…")


def _value(error: Any) -> str | None:
    validator = getattr(error, "validator", None)
    kind = type(validator).__name__
    value = getattr(error, "obj", None)
    if isinstance(value, dict | list) or value is None or validator is None:
        return None
    if kind == "XsdAtomicBuiltin":
        words = _BUILTIN_WORDS.get(_local(getattr(validator, "name", "")))
    elif kind == "XsdPatternFacets":
        words = _pattern(getattr(validator, "regexps", ()))
    elif kind == "XsdEnumerationFacets":
        words = _codes(getattr(validator, "enumeration", ()))
    elif kind in _FACET_WORDS:
        words = _FACET_WORDS[kind](str(value), getattr(validator, "value", "?"))
    else:
        words = None
    return None if words is None else f"{_shown(value)} {words}"


def _pattern(regexps: Sequence[str]) -> str | None:
    for regexp in regexps:
        for pattern, words in _PATTERN_WORDS:
            found = pattern.fullmatch(regexp)
            if found is not None:
                return f"is not accepted: {words(found)}"
    if not regexps:
        return None
    return f"does not have the required form (the schema's pattern is {' or '.join(regexps)})"


def _codes(enumeration: Sequence[object]) -> str | None:
    codes = [str(code) for code in enumeration]
    if not codes:
        return None
    shown = ", ".join(codes[:_MAX_CODES])
    more = f" … ({len(codes)} codes in all)" if len(codes) > _MAX_CODES else ""
    return f"is not one of the allowed codes: {shown}{more}"


# ---- anything else: the library's reason without its internals ----------------------------------

_INTERNALS = (
    (re.compile(r"\s*for <class '[^']*'>"), ""),
    (re.compile(r"\bXsd[A-Za-z]+\([^()]*\)"), "the schema"),
    (re.compile(r"<class '[^']*'>"), "the expected type"),
)


def _fallback(error: Any) -> str:
    reason = str(getattr(error, "reason", None) or getattr(error, "message", None) or error)
    for pattern, replacement in _INTERNALS:
        reason = pattern.sub(replacement, reason)
    return reason.strip() or "the element does not follow the FatturaPA schema"
