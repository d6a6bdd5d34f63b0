"""Hostile values for property-based tests: what a careless or malicious caller passes."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

#: One 10 MB string, shared (building it per example would dominate the run time).
TEN_MB = "x" * 10_000_000

SPECIAL_TEXT = [
    "",
    " ",
    "\t\n",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "'; DROP TABLE user_preferences; --",
    "1 OR 1=1",
    '" OR ""="',
    "../../etc/passwd",
    "..\\..\\windows\\system32",
    "/absolute/path",
    "%s%n%x",
    "{{7*7}}",
    "[bold red]markup[/]",
    "\u202eevil",
    "😀" * 300,
    "a" * 255,
    "a" * 256,
    "a" * 1_000_001,
    TEN_MB,
    "NaN",
    "null",
]

SPECIAL_NUMBERS: list[Any] = [
    0,
    -1,
    2**31,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**4000,
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    1e308,
    5e-324,
    True,
    False,
]


class NotJson:
    """An object no JSON encoder knows."""

    def __repr__(self) -> str:
        return "NotJson()"


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


SPECIAL_VALUES: list[Any] = [
    None,
    NotJson(),
    b"bytes",
    {1, 2},
    (1, 2),
    datetime(2020, 1, 1),
    timedelta(seconds=-1),
    {1: "int key"},
    {"nested": {"nan": math.nan}},
    {"huge": 10**5000},
    {"nul": "a\x00b"},
    {"surrogate": "\udc80"},
    {"\ud800": "surrogate key"},
    _deep(65),
    _deep(2000),
    [TEN_MB],
    {"big": "y" * 1_000_001},
    object,
    print,
]

any_text = st.text(st.characters(exclude_categories=()), max_size=40)
hostile_text = st.one_of(st.sampled_from(SPECIAL_TEXT), any_text)
hostile_number = st.one_of(
    st.sampled_from(SPECIAL_NUMBERS),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
)
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.one_of(any_text, st.integers()), children, max_size=4)
    ),
    max_leaves=12,
)
#: Anything at all: the argument a hostile caller might pass in any position.
hostile = st.one_of(
    hostile_text,
    hostile_number,
    st.sampled_from(SPECIAL_VALUES),
    json_like,
    st.lists(st.sampled_from(SPECIAL_VALUES), max_size=3),
    st.datetimes(timezones=st.none() | st.just(UTC)),
)
