"""Phone numbers in E.164, the one form stored and compared (contract: data formats)."""

from __future__ import annotations

import re
import unicodedata

from iam.errors import ValidationError

_E164 = re.compile(r"^\+[1-9]\d{6,14}$", re.ASCII)
_MAINLAND = re.compile(r"^1[3-9]\d{9}$", re.ASCII)
_SEPARATORS = re.compile(r"[\s\-()\[\].\u2010-\u2015\u2212]")
_MAINLAND_WITH_CODE = re.compile(r"^(?:\+|00)?86(1[3-9]\d{9})$", re.ASCII)


def normalize_phone(raw: str) -> str:
    """`+8613800138000` as given, or a mainland number as people in China type it (`138...`,
    `86 138...`, `0086 138...`), read as +86; else refused.

    Full-width digits, plus signs and brackets (what Chinese input methods type) are read as
    ASCII, and spaces, dashes, dots and brackets are dropped, so one number has one spelling in
    the unique phone column. `00` is the international prefix dialled from China: `00` + a
    country code is that country's number."""
    value = _SEPARATORS.sub("", unicodedata.normalize("NFKC", raw or ""))
    if _MAINLAND.match(value):
        return "+86" + value
    mainland = _MAINLAND_WITH_CODE.match(value)
    if mainland:
        return "+86" + mainland.group(1)
    if value.startswith("00"):
        value = "+" + value[2:]
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


def display_phone(phone: str) -> str:
    """+86 138****8000: a masked number as a page shows it, the country code set apart."""
    masked = mask_phone(phone)
    if phone.startswith("+86") and len(phone) == 14:
        return "+86 " + masked[3:]
    return masked
