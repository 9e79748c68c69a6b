"""Render SLO PromQL templates for one release, safely.

SLO queries are written once per ModelDeployment as templates and rendered for
every release. The values substituted (namespace, deployment, release and
version names) come from users' objects, so they are data, never PromQL: each
is escaped for the string literal it lands in, and a variable placed where no
escaping could make it safe (outside a double-quoted string) is refused. The
window is the one exception: it is checked against the API's duration format,
which leaves nothing but digits and unit letters to substitute.

Syntax: ``{{name}}`` or ``{{ name }}``. Inside a regex matcher (``=~"..."`` or
``!~"..."``) a value is also regex-escaped, so ``model.v1`` matches only itself.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from enum import Enum
from typing import Final

from slipway.api.durations import parse_duration

NAMESPACE: Final = "namespace"
DEPLOYMENT: Final = "deployment"
RELEASE: Final = "release"
VERSION: Final = "version"
WINDOW: Final = "window"

VARIABLES: Final = frozenset({NAMESPACE, DEPLOYMENT, RELEASE, VERSION, WINDOW})
"""Every variable a template may use."""

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# The metacharacters of RE2 (Prometheus' regex engine), as Go's regexp.QuoteMeta.
_REGEX_META: Final = frozenset("\\.+*?()|[]{}^$")

# Escapes PromQL's double-quoted strings understand (Go syntax).
_STRING_ESCAPES: Final = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class _Context(Enum):
    """Where a placeholder sits in the query text."""

    CODE = "code"
    STRING = "string"  # inside "...": escaped as a string
    REGEX = "regex"  # inside "..." after =~ or !~: regex-escaped, then as a string
    OTHER_QUOTE = "other"  # inside '...' or `...`: refused (use double quotes)


def escape_string(value: str) -> str:
    """Escape ``value`` for the inside of a PromQL double-quoted string."""
    out: list[str] = []
    for ch in value:
        if ch in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")  # other control characters, spelled out
        else:
            out.append(ch)
    return "".join(out)


def escape_regex(value: str) -> str:
    """Escape RE2 metacharacters so ``value`` matches only itself (before string-escaping)."""
    return "".join("\\" + ch if ch in _REGEX_META else ch for ch in value)


def _contexts(template: str) -> list[tuple[re.Match[str], _Context]]:
    """Each placeholder of ``template`` with the lexical context it sits in."""
    found: list[tuple[re.Match[str], _Context]] = []
    quote: str | None = None  # the quote character of the string we are in
    context = _Context.CODE
    i = 0
    while i < len(template):
        if template.startswith("{{", i) and (match := _PLACEHOLDER.match(template, i)):
            found.append((match, context))
            i = match.end()
            continue
        ch = template[i]
        if quote is None:
            if ch in "\"'`":
                quote = ch
                before = template[:i].rstrip()
                if ch != '"':
                    context = _Context.OTHER_QUOTE
                elif before.endswith(("=~", "!~")):
                    context = _Context.REGEX
                else:
                    context = _Context.STRING
        elif ch == "\\" and quote != "`":
            i += 1  # skip the escaped character (raw strings have no escapes)
        elif ch == quote:
            quote, context = None, _Context.CODE
        i += 1
    return found


def _unknown(name: str, slo: str) -> ValueError:
    known = ", ".join(sorted(VARIABLES))
    return ValueError(f"SLO {slo!r}: unknown template variable {{{{{name}}}}}; known: {known}")


def template_variables(template: str, *, slo: str = "?") -> set[str]:
    """The variables ``template`` uses; ValueError for one that does not exist."""
    names: set[str] = set()
    for match in _PLACEHOLDER.finditer(template):
        name = match.group(1).strip()
        if not _IDENTIFIER.match(name) or name not in VARIABLES:
            raise _unknown(name, slo)
        names.add(name)
    return names


def render(
    template: str,
    variables: Mapping[str, str],
    *,
    slo: str = "?",
    regex: bool | Collection[str] = False,
) -> str:
    """Substitute ``variables`` into ``template``, escaping every value.

    ``slo`` names the SLO in error messages. Values inside ``=~"..."`` /
    ``!~"..."`` are regex-escaped automatically; ``regex`` asks for the same for
    every value (True) or for the named variables, wherever they sit (for
    templates that build a regex in a way this scanner cannot see).

    Raises ValueError naming the SLO and the variable when the template uses an
    unknown variable, lacks a value, puts a name outside a double-quoted string,
    or the window is not a valid duration.
    """
    template_variables(template, slo=slo)  # unknown names first: the clearest error
    out: list[str] = []
    last = 0
    for match, context in _contexts(template):
        name = match.group(1).strip()
        if name not in variables:
            raise ValueError(f"SLO {slo!r}: no value for template variable {{{{{name}}}}}")
        value = variables[name]
        if name == WINDOW:
            try:
                parse_duration(value)
            except ValueError as err:
                raise ValueError(f"SLO {slo!r}: window: {err}") from None
            text = value  # digits and unit letters only: safe anywhere
        elif context is _Context.CODE:
            raise ValueError(
                f"SLO {slo!r}: {{{{{name}}}}} must sit inside a double-quoted label matcher,"
                f' e.g. {name}="{{{{{name}}}}}"'
            )
        elif context is _Context.OTHER_QUOTE:
            raise ValueError(
                f"SLO {slo!r}: {{{{{name}}}}} must sit inside double quotes, not ' or `"
            )
        else:
            wants_regex = context is _Context.REGEX or (
                regex is True or (not isinstance(regex, bool) and name in regex)
            )
            text = escape_string(escape_regex(value) if wants_regex else value)
        out.append(template[last : match.start()])
        out.append(text)
        last = match.end()
    out.append(template[last:])
    return "".join(out)


def check_template(template: str, *, slo: str = "?") -> set[str]:
    """Validate a template without real values (for admission); return its variables."""
    sample = {name: "x" for name in VARIABLES} | {WINDOW: "1m"}
    render(template, sample, slo=slo)
    return template_variables(template, slo=slo)


def release_variables(
    namespace: str, deployment: str, release: str, version: str
) -> dict[str, str]:
    """The variables of one release (the window comes from each SLO)."""
    return {NAMESPACE: namespace, DEPLOYMENT: deployment, RELEASE: release, VERSION: version}
