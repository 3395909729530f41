"""iam/services/phones.py: one stored form (E.164), anything else refused."""

from __future__ import annotations

import pytest

from iam.errors import ValidationError
from iam.services.phones import mask_phone, normalize_phone


@pytest.mark.parametrize("raw", ["13800138000", "19912345678", "15000000000"])
def test_eleven_digit_mainland_number_gets_plus_86(raw: str) -> None:
    assert normalize_phone(raw) == "+86" + raw


@pytest.mark.parametrize("raw", ["+8613800138000", "+14155552671", "+447911123456", "+85291234567"])
def test_e164_number_is_kept(raw: str) -> None:
    assert normalize_phone(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [
        "8613800138000",
        "86 138 0013 8000",
        "0086 138-0013-8000",
        "008613800138000",
        "+86 138 0013 8000",
        "+86-138-0013-8000",
        "(+86) 138 0013 8000",
        "+86 (138) 0013-8000",
        "１３８００１３８０００",  # full-width digits
        "＋８６ １３８ ００１３ ８０００",  # full-width plus and ideographic spaces
        "（＋８６）１３８－００１３－８０００",  # full-width brackets and dash
        "138.0013.8000",
        "138—0013—8000",  # em dash
    ],
)
def test_mainland_numbers_as_typed_in_china(raw: str) -> None:
    assert normalize_phone(raw) == "+8613800138000"


def test_double_zero_is_the_international_prefix() -> None:
    assert normalize_phone("001 415 555 2671") == "+14155552671"
    assert normalize_phone("00852 9123 4567") == "+85291234567"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("138 0013 8000", "+8613800138000"),
        ("138-0013-8000", "+8613800138000"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("+1 (415) 555-2671", "+14155552671"),
        (" 13800138000 ", "+8613800138000"),
    ],
)
def test_separators_are_stripped(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "hello",
        "1380013800",  # 10 digits
        "138001380000",  # 12 digits
        "12800138000",  # mainland numbers start 13-19
        "010-12345678",  # landline
        "02112345678",  # landline, 11 digits
        "+0123456789",  # no country code starts with 0
        "+86",
        "+123",  # too short
        "+1234567890123456",  # longer than E.164 allows
        "86138001380",  # 86 and too few digits
        "000861380013800",  # 000 is no prefix
        "+86 138 0013 800O",  # letter O
        "13800138000;drop",
    ],
)
def test_anything_else_is_refused_naming_the_phone_field(raw: str) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_phone(raw)
    assert caught.value.field == "phone"
    assert str(caught.value)


def test_none_is_refused() -> None:
    with pytest.raises(ValidationError):
        normalize_phone(None)  # type: ignore[arg-type]


def test_mask_phone_keeps_prefix_and_last_four() -> None:
    assert mask_phone("+8613800138000") == "+86138****8000"
    assert mask_phone("+14155552671") == "+141****2671"


def test_mask_phone_hides_the_middle() -> None:
    masked = mask_phone("+8613812345678")
    assert "1234" not in masked
    assert masked.endswith("5678")


def test_mask_phone_hides_short_values_entirely() -> None:
    assert mask_phone("12345678") == "****"
    assert mask_phone("") == "****"


@pytest.mark.parametrize(
    "raw", ["138００１３８０００", "＋８６１３８００１３８０００", "+86 １３８-0013-8000"]
)
def test_full_width_digits_are_read_as_ascii(raw: str) -> None:
    """What Chinese input methods type is one number with one spelling."""
    assert normalize_phone(raw) == "+8613800138000"


@pytest.mark.parametrize("raw", ["١٣٨٠٠١٣٨٠٠٠", "+86١٣٨٠٠١٣٨٠٠٠"])
def test_other_digit_scripts_are_refused(raw: str) -> None:
    with pytest.raises(ValidationError):
        normalize_phone(raw)
