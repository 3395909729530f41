"""Phone numbers in E.164, the one form stored and compared (contract: data formats)."""

from __future__ import annotations

import re
import unicodedata

from iam.errors import ValidationError

_E164 = re.compile(r"^\+[1-9]\d{6,14}$", re.ASCII)
_MAINLAND = re.compile(r"^1[3-9]\d{9}$", re.ASCII)
_SEPARATORS = re.compile(r"[\s\-()]")


def normalize_phone(raw: str) -> str:
    """`+8613800138000` as given, or an 11-digit mainland number read as +86; else refused.

    Full-width digits and plus signs (what Chinese input methods type) are read as ASCII, so one
    number has one spelling in the unique phone column."""
    value = _SEPARATORS.sub("", unicodedata.normalize("NFKC", raw or ""))
    if _MAINLAND.match(value):
        return "+86" + value
    if _E164.match(value):
        return value
    raise ValidationError(
        "phone",
        "Enter a phone number in international form (+8613800138000) "
        "or an 11-digit mainland number.",
    )


def mask_phone(phone: str) -> str:
    """+86138****8000: enough to recognise, not enough to harvest (logs, pages)."""
    return phone[:-8] + "****" + phone[-4:] if len(phone) > 8 else "****"
