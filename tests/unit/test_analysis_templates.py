"""PromQL template rendering: substitution, escaping, and the errors users see."""

from __future__ import annotations

import re

import pytest

from slipway.analysis.templates import (
    VARIABLES,
    check_template,
    escape_regex,
    escape_string,
    release_variables,
    render,
    template_variables,
)

VARS = release_variables("ml", "fraud", "fraud-v2", "2.0.1") | {"window": "5m"}
INJECTION = 'x"} or vector(1) #'


def _string_literals(query: str) -> list[str]:
    """The raw contents of the double-quoted strings of ``query`` (escapes kept)."""
    return re.findall(r'"((?:[^"\\]|\\.)*)"', query)


def _structure(query: str) -> str:
    """``query`` with every double-quoted string emptied: what PromQL parses as code."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('up{namespace="{{namespace}}"}', 'up{namespace="ml"}'),
        ('up{namespace="{{ namespace }}"}', 'up{namespace="ml"}'),
        ('up{namespace="{{\tnamespace\n}}"}', 'up{namespace="ml"}'),
        (
            'rate(x{deployment="{{deployment}}",release="{{release}}"}[{{window}}])',
            'rate(x{deployment="fraud",release="fraud-v2"}[5m])',
        ),
        ('x{version="{{version}}"}', 'x{version="2.0.1"}'),
        ('x{version=~"{{version}}"}', 'x{version=~"2\\\\.0\\\\.1"}'),
        ('x{version!~"{{version}}"}', 'x{version!~"2\\\\.0\\\\.1"}'),
        ('x{version =~ "{{version}}"}', 'x{version =~ "2\\\\.0\\\\.1"}'),
        ('x{pod=~"{{deployment}}-.*"}', 'x{pod=~"fraud-.*"}'),
        ('x{version!="{{version}}"}', 'x{version!="2.0.1"}'),
        ("sum(x)", "sum(x)"),
        ('x{a="{{release}}{{release}}"}', 'x{a="fraud-v2fraud-v2"}'),
        ("avg_over_time(x[{{ window }}:30s])", "avg_over_time(x[5m:30s])"),
    ],
)
def test_render_substitutes(template: str, expected: str) -> None:
    assert render(template, VARS, slo="s") == expected


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain", "plain"),
        ('a"b', 'a\\"b'),
        ("a\\b", "a\\\\b"),
        ("a\nb", "a\\nb"),
        ("a\rb\tc", "a\\rb\\tc"),
        ("a\x00b\x7f", "a\\x00b\\x7f"),
        ('\\"', '\\\\\\"'),
        ("ünï", "ünï"),
    ],
)
def test_escape_string(value: str, escaped: str) -> None:
    assert escape_string(value) == escaped


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("a.b", "a\\.b"),
        ("a-b_c", "a-b_c"),
        (".+*?()|[]{}^$\\", "\\.\\+\\*\\?\\(\\)\\|\\[\\]\\{\\}\\^\\$\\\\"),
    ],
)
def test_escape_regex(value: str, escaped: str) -> None:
    assert escape_regex(value) == escaped


@pytest.mark.parametrize(
    "evil",
    [
        INJECTION,
        'x", release=~".*',
        "x\\",
        'x\\"} or vector(1) #',
        "x\n} or vector(1)",
        "x`'",
        "{{namespace}}",
    ],
)
@pytest.mark.parametrize(
    "template",
    [
        'sum(rate(x{release="{{release}}"}[{{window}}]))',
        'sum(rate(x{release=~"{{release}}"}[{{window}}]))',
        'sum(x{release="{{release}}",namespace="{{namespace}}"}) / sum(y{release="{{release}}"})',
    ],
)
def test_a_value_cannot_change_the_query_structure(evil: str, template: str) -> None:
    variables = VARS | {"release": evil}
    rendered = render(template, variables, slo="s")
    # Code outside strings is exactly the template's code outside strings.
    assert _structure(rendered) == _structure(render(template, VARS, slo="s"))
    assert "vector(1)" not in _structure(rendered)
    # Each literal that held the value decodes back to the value itself.
    literals = _string_literals(rendered)
    decoded = [lit.encode().decode("unicode_escape") for lit in literals]
    if "=~" in template:
        assert any(re.fullmatch(d, evil) for d in decoded), "the regex must match the value"
    else:
        assert evil in decoded


def test_injection_literal_is_exact() -> None:
    rendered = render('up{release="{{release}}"}', VARS | {"release": INJECTION}, slo="s")
    assert rendered == 'up{release="x\\"} or vector(1) #"}'


def test_regex_value_matches_only_itself() -> None:
    rendered = render('x{v=~"{{version}}"}', VARS | {"version": "1.2+rc(3)"}, slo="s")
    (literal,) = _string_literals(rendered)
    pattern = literal.encode().decode("unicode_escape")
    assert re.fullmatch(pattern, "1.2+rc(3)")
    assert not re.fullmatch(pattern, "1x2+rc(3)")
    assert not re.fullmatch(pattern, "1.22rc3")


@pytest.mark.parametrize(
    ("regex", "expected"),
    [
        (False, 'x{v="1.2"}'),
        (True, 'x{v="1\\\\.2"}'),
        ({"version"}, 'x{v="1\\\\.2"}'),
        ({"release"}, 'x{v="1.2"}'),
    ],
)
def test_caller_can_ask_for_regex_escaping(regex: bool | set[str], expected: str) -> None:
    assert render('x{v="{{version}}"}', VARS | {"version": "1.2"}, slo="s", regex=regex) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ('x{a="{{model}}"}', "SLO 'lat': unknown template variable {{model}}; known: deployment"),
        ('x{a="{{ Release }}"}', "unknown template variable {{Release}}"),
        ('x{a="{{rel-ease}}"}', "unknown template variable {{rel-ease}}"),
        ('x{a="{{}}"}', "unknown template variable {{}}"),
        ("x[{{release}}]", "SLO 'lat': {{release}} must sit inside a double-quoted label matcher"),
        ("sum by ({{namespace}}) (x)", "{{namespace}} must sit inside a double-quoted"),
        ("x{a='{{release}}'}", "{{release}} must sit inside double quotes"),
        ("x{a=`{{release}}`}", "{{release}} must sit inside double quotes"),
    ],
)
def test_render_errors_name_slo_and_variable(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        render(template, VARS, slo="lat")


@pytest.mark.parametrize("window", ["5", "5 m", "1d", "", "5m]) or vector(1", "-1m", "1.5m"])
def test_window_must_be_a_duration(window: str) -> None:
    with pytest.raises(ValueError, match=r"SLO 'lat': window: invalid duration"):
        render("rate(x[{{window}}])", VARS | {"window": window}, slo="lat")


def test_missing_value_is_named() -> None:
    message = "SLO 'lat': no value for template variable {{version}}"
    with pytest.raises(ValueError, match=re.escape(message)):
        render('x{v="{{version}}"}', {"window": "1m"}, slo="lat")


def test_quotes_inside_strings_do_not_confuse_the_scanner() -> None:
    template = 'x{a="q\\"{{release}}", b=\'{{\'} + y{c=~"{{release}}"}'
    # A stray {{ runs to the next }}: reported, never guessed at.
    with pytest.raises(ValueError, match="unknown template variable"):
        render(template, VARS, slo="s")
    ok = 'x{a="q\\"{{release}}"} + y{c=~"a.{{release}}"}'
    assert render(ok, VARS | {"release": "r.1"}, slo="s") == ('x{a="q\\"r.1"} + y{c=~"a.r\\\\.1"}')


def test_template_variables_and_check() -> None:
    template = 'rate(x{release="{{release}}",ns="{{ namespace }}"}[{{window}}])'
    assert template_variables(template) == {"release", "namespace", "window"}
    assert check_template(template, slo="s") == {"release", "namespace", "window"}
    assert {"namespace", "deployment", "release", "version", "window"} == VARIABLES
    with pytest.raises(ValueError, match="must sit inside"):
        check_template("x[{{release}}]", slo="s")


def test_unicode_escape_round_trip_matches_promql_rules() -> None:
    # escape_string emits only escapes PromQL (Go) understands; Python decodes the same set.
    value = 'a"b\\c\nd\te\x01'
    assert escape_string(value).encode().decode("unicode_escape") == value
