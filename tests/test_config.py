"""The serialisable-config base shared by every settings dataclass."""

from __future__ import annotations

import dataclasses

import pytest

from tuningfork.config import Serialisable
from tuningfork.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Inner(Serialisable):
    sizes: tuple[int, ...] = (1, 2)


@dataclasses.dataclass
class Outer(Serialisable):
    name: str
    inner: Inner = dataclasses.field(default_factory=Inner)
    weights: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.inner, dict):
            self.inner = Inner.from_dict(self.inner)
        if not self.name:
            raise ConfigError("Outer: name must not be empty")


def test_round_trip_through_dict_and_json():
    config = Outer("x", Inner((3, 4)), {"a": (1, 2)})
    assert config.to_dict() == {"name": "x", "inner": {"sizes": [3, 4]}, "weights": {"a": [1, 2]}}
    assert Outer.from_json(config.to_json()).to_dict() == config.to_dict()


def test_missing_keys_take_defaults():
    assert Outer.from_dict({"name": "x"}) == Outer("x")


def test_unknown_key_is_refused_with_the_known_ones():
    with pytest.raises(ConfigError, match=r"Outer: unknown key\(s\) 'colour' \(known: name, inner, weights\)"):
        Outer.from_dict({"name": "x", "colour": "red"})


def test_missing_required_key_is_refused():
    with pytest.raises(ConfigError, match="missing required key"):
        Outer.from_dict({})


def test_not_a_mapping_and_not_json_are_refused():
    with pytest.raises(ConfigError, match="expected a mapping"):
        Outer.from_dict(["name"])
    with pytest.raises(ConfigError, match="not valid JSON"):
        Outer.from_json("{name: x}")


def test_validation_of_the_dataclass_still_runs():
    with pytest.raises(ConfigError, match="name must not be empty"):
        Outer.from_dict({"name": ""})
