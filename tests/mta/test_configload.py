"""Config values with units, and errors that name the key."""

from __future__ import annotations

import pytest

from warmup_base.configload import ConfigError, parse_duration, parse_size


@pytest.mark.parametrize(("text", "seconds"), [(30, 30.0), ("90s", 90.0), ("15m", 900.0), ("1.5h", 5400.0),
                                               ("5d", 432000.0), ("2w", 1209600.0), (0.25, 0.25)])
def test_durations(text, seconds):
    assert parse_duration(text, "k") == seconds


@pytest.mark.parametrize(("text", "size"), [(100, 100), ("512K", 524288), ("25M", 26214400), ("1g", 1 << 30),
                                            ("10kb", 10240)])
def test_sizes(text, size):
    assert parse_size(text, "k") == size


@pytest.mark.parametrize(("parse", "value", "message"), [
    (parse_duration, "soon", "queue.max_age: expected a duration such as"),
    (parse_duration, True, "queue.max_age: expected a duration such as"),
    (parse_duration, -5, "queue.max_age: must not be negative"),
    (parse_size, 1.5, "queue.max_age: expected a size, got float"),
    (parse_size, "25 parsecs", "queue.max_age: expected a size such as"),
])
def test_bad_values_name_the_key(parse, value, message):
    with pytest.raises(ConfigError) as err:
        parse(value, "queue.max_age")
    assert str(err.value).startswith(message)
