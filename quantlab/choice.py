"""Settings chosen from a fixed list: an enum whose members are picked by value or name, any case."""

from __future__ import annotations

import enum

from quantlab.errors import ConfigError


class Choice(enum.Enum):
    @classmethod
    def from_value(cls, value):
        """The member named or valued `value` (a member passes through); a ConfigError listing the choices."""
        if isinstance(value, cls):
            return value
        for member in cls:
            if str(value).lower() in (member.value, member.name.lower()):
                return member
        choices = ", ".join(m.value for m in cls)
        raise ConfigError(f"{cls.__name__} {value!r} is not valid: choose one of {choices}")
