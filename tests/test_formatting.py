"""Numbers for people: one formatter, and a value that is not a number is never printed as one."""

from __future__ import annotations

import math

import pytest

from assay.formatting import human_bytes, num, pct


@pytest.mark.parametrize("value", [None, math.nan, "0.3", True, [1.0]])
def test_what_is_not_a_number_is_shown_as_missing(value: object) -> None:
    assert num(value) == "n/a"
    assert num(value, ".3f", missing="-") == "-"
    assert pct(value) == "n/a"
    assert human_bytes(value) == "n/a"


def test_numbers_follow_the_spec_and_compact_keeps_columns_narrow() -> None:
    assert num(0.12345, "+.3f") == "+0.123"
    assert num(3, ".2f") == "3.00"
    assert num(1234567.0, ".2f", compact=True) == "1.235e+06"
    assert num(-0.5, "+.1f", compact=True) == "-0.5"
    assert num(math.inf) == "inf"  # infinite is a value (a perplexity can be), not a missing one
    assert pct(0.256) == "26%"


def test_bytes_use_binary_units() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(3 * 2**30) == "3.0 GiB"
    assert human_bytes(1536 * 2**20) == "1.5 GiB"
    assert human_bytes(2**20) == "1.0 MiB"
    assert human_bytes(math.inf) == "n/a"
