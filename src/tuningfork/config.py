"""One serialisable-config base for every settings dataclass.

Model folders, cached pipeline stages and worker processes all carry their
settings as JSON. :class:`Serialisable` gives a dataclass ``to_dict`` /
``from_dict`` / ``to_json`` / ``from_json`` once, with the same rules
everywhere:

* ``to_dict`` is JSON-ready: tuples become lists, nested serialisable
  configs become dicts;
* ``from_dict`` rejects a key that is not a field with a
  :class:`~tuningfork.errors.ConfigError` naming the class and the known
  keys, and lets a missing key take its default, so that settings saved by
  an older release still load; the dataclass's ``__post_init__`` then
  validates the values.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Self, TypeVar

from .errors import ConfigError

T = TypeVar("T", bound="Serialisable")


def _plain(value: Any) -> Any:
    if isinstance(value, Serialisable):
        return value.to_dict()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


class Serialisable:
    """Mixin for dataclasses whose settings travel as JSON.

    Subclasses are dataclasses; nothing else is required. A subclass whose
    field needs a conversion on the way in (a nested config) overrides
    :meth:`from_dict` and calls ``super().from_dict`` with the converted
    values.
    """

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-ready dict.

        Returns
        -------
        dict
            One key per field; ``type(self).from_dict(self.to_dict()) == self``.
        """
        return {field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> Self:
        """Build the config from a dict such as :meth:`to_dict` returns.

        Parameters
        ----------
        settings : dict
            Field names to values; missing fields take their defaults.

        Returns
        -------
        Serialisable
            An instance of the class it is called on.

        Raises
        ------
        ConfigError
            For something that is not a mapping, a key that is not a field,
            or a missing field without a default.
        """
        name = cls.__name__
        if not isinstance(settings, dict):
            raise ConfigError(f"{name}: expected a mapping of settings, got {type(settings).__name__}")
        fields = dataclasses.fields(cls)
        known = [field.name for field in fields]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ConfigError(
                f"{name}: unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(known)})"
            )
        required = [
            field.name
            for field in fields
            if field.init
            and field.default is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING
            and field.name not in settings
        ]
        if required:
            raise ConfigError(f"{name}: missing required key(s) {', '.join(map(repr, required))}")
        return cls(**settings)

    def to_json(self) -> str:
        """Return the settings as a JSON string (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Self:
        """Build the config from a JSON string written by :meth:`to_json`.

        Parameters
        ----------
        text : str
            JSON object of settings.

        Returns
        -------
        Serialisable

        Raises
        ------
        ConfigError
            For text that is not JSON, or invalid settings.
        """
        try:
            settings = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(
                f"{cls.__name__}: settings are not valid JSON ({error.msg} at line {error.lineno})"
            ) from None
        return cls.from_dict(settings)
