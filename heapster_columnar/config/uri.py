"""``kind:url?key=value`` URIs, as Heapster's ``--source`` and ``--sink`` flags spell them.

This module only splits a URI and checks its options against what a component declares; it
knows no kind. Like Heapster, the part after the first ``:`` goes through ``$VAR`` / ``${VAR}``
expansion first (``common/flags/flags.go``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from heapster_columnar.errors import ConfigError

__all__ = ["Uri", "parse_uri"]


@dataclass(frozen=True, slots=True)
class Uri:
    """A parsed ``kind:target?options`` URI; ``target`` is the URL or path without the query."""

    text: str
    kind: str
    target: str
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        return urlsplit(self.target).scheme

    @property
    def redacted(self) -> str:
        """``text`` with secrets (``pw=``, ``password=``, ``token=`` and URL passwords) as ``***``,
        for error messages and logs."""
        text = re.sub(r"(?i)([?&](?:pw|password|passwd|token)=)[^&]*", r"\1***", self.text)
        return re.sub(r"(//[^/:@]+:)[^@/]*@", r"\1***@", text)

    def check(self, known: Collection[str]) -> None:
        """Reject options the component does not know, naming them and what it accepts."""
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            raise ConfigError(
                f"{self.kind}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                f"in {self.redacted!r} (known: {', '.join(sorted(known)) or 'none'})"
            )

    def flag(self, name: str, default: bool) -> bool:
        """A boolean option: true/false/1/0/yes/no, case-insensitive; anything else is an error."""
        value = self.options.get(name)
        if value is None or value == "":
            return default
        lowered = value.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"{self.kind}: option {name}={value!r} is not a boolean (true or false)")

    def integer(self, name: str, default: int, *, minimum: int | None = None) -> int:
        value = self.options.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{self.kind}: option {name}={value!r} is not an integer") from None
        if minimum is not None and number < minimum:
            raise ConfigError(f"{self.kind}: option {name}={value!r} must be at least {minimum}")
        return number


def parse_uri(text: str, *, environ: Mapping[str, str] | None = None) -> Uri:
    """Split ``kind:target?k=v&...``; a missing kind, an empty key or a repeated option is an error."""
    kind, sep, rest = text.partition(":")
    if not sep or not kind or any(c in kind for c in "/?&= "):
        raise ConfigError(f"{text!r}: expected <kind>:<url or path>[?option=value&...]")
    rest = _expand(rest, os.environ if environ is None else environ)
    target, _, query = rest.partition("?")
    if target in ("''", '""'):  # Heapster's in-cluster idiom: `kubernetes.summary_api:''`
        target = ""
    options: dict[str, str] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigError(f"{text!r}: malformed options {query!r} (expected key=value pairs joined by &)") from None
    for key, value in pairs:
        if key in options:
            raise ConfigError(f"{text!r}: option {key!r} is given twice")
        options[key] = value
    return Uri(text, kind, target, options)


def _expand(text: str, environ: Mapping[str, str]) -> str:
    """``$VAR`` and ``${VAR}`` from ``environ``; unknown variables expand to "" (as Go's os.ExpandEnv)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
            continue
        if text[i + 1] == "{":
            end = text.find("}", i + 2)
            if end < 0:
                raise ConfigError(f"{text!r}: unterminated ${{...}}")
            out.append(environ.get(text[i + 2 : end], ""))
            i = end + 1
            continue
        j = i + 1
        while j < len(text) and (text[j].isalnum() or text[j] == "_"):
            j += 1
        if j == i + 1:
            out.append("$")
            i += 1
            continue
        out.append(environ.get(text[i + 1 : j], ""))
        i = j
    return "".join(out)
