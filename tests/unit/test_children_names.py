"""Children get valid names and label values from any name the API admits,
and ``child_problems`` says in words what would still make a child invalid."""

from __future__ import annotations

import random
import re

import pytest
from pydantic import ValidationError

from slipway.api import constants as c
from slipway.api.models import ModelDeployment, ModelRelease
from slipway.kube.children import (
    MAX_NAME,
    build_deployment,
    build_service,
    child_problems,
    deployment_name,
    is_label_value,
    is_qualified_name,
)
from tests.unit.factories import model, release

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LONGEST_MODEL = "m" + "x" * 61 + "1"  # 63: the longest admitted ModelDeployment name
LONGEST_RELEASE = "9" + "y" * 61 + "9"  # 63, digits at both ends: still admitted


def all_labels(body: dict[str, object]) -> dict[str, str]:
    meta = body["metadata"]
    assert isinstance(meta, dict)
    labels = dict(meta["labels"])
    spec = body["spec"]
    assert isinstance(spec, dict)
    if "template" in spec:
        labels.update(spec["template"]["metadata"]["labels"])
        labels.update(spec["selector"]["matchLabels"])
    else:
        labels.update(spec["selector"])
    return labels


def test_longest_admitted_names_give_valid_children() -> None:
    md = model(LONGEST_MODEL)
    rel = release(LONGEST_RELEASE, deployment=LONGEST_MODEL)
    deployment = build_deployment(md, rel, 2)
    service = build_service(md)
    name = deployment["metadata"]["name"]
    assert len(name) <= MAX_NAME and DNS_LABEL.fullmatch(name), name
    assert service["metadata"]["name"] == LONGEST_MODEL
    for body in (deployment, service):
        for key, value in all_labels(body).items():
            assert is_qualified_name(key) and is_label_value(value), (key, value)
    assert deployment["metadata"]["labels"][c.LABEL_RELEASE] == LONGEST_RELEASE
    assert child_problems(md, rel) == []


def test_long_deployment_names_stay_distinct() -> None:
    first = deployment_name(LONGEST_MODEL, "a" * 63)
    second = deployment_name(LONGEST_MODEL, "a" * 62 + "b")
    assert first != second
    assert deployment_name("fraud", "fraud-v2") == "fraud-fraud-v2"  # short names unchanged


@pytest.mark.parametrize("version", ["v1+cu118", "vé-1", "-v1-", "ü", "1.0_rc.2"])
def test_version_label_is_always_a_valid_label_value(version: str) -> None:
    rel = ModelRelease.model_validate(
        {
            "metadata": {"name": "fraud-v2"},
            "spec": {"deployment": "fraud", "model": {"uri": "s3://m", "version": version}},
        }
    )
    value = build_deployment(model(), rel, 2)["metadata"]["labels"][c.LABEL_VERSION]
    assert is_label_value(value) and value, value


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("fraud." + "x", "no dots"),
        ("f" * 64, "at most 63"),
        ("1fraud", "starting with a letter"),
        ("Fraud", "lowercase"),
    ],
)
def test_model_names_that_cannot_name_a_service_are_refused(name: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        model(name)


@pytest.mark.parametrize(("name", "why"), [("r" * 64, "at most 63"), ("fraud.v2", "no dots")])
def test_release_names_that_cannot_be_labels_are_refused(name: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        release(name)


def test_release_must_name_a_possible_model() -> None:
    with pytest.raises(ValidationError, match="deployment"):
        release("fraud-v2", deployment="1fraud")


def test_problems_name_the_field_to_fix() -> None:
    md = model(template={"metadata": {"labels": {"team": "risk team"}}, "spec": _containers()})
    problems = child_problems(md, release())
    assert len(problems) == 1
    assert "spec.template.metadata.labels" in problems[0] and "team" in problems[0]

    md = model(container="missing", template={"spec": _containers()})
    assert any("spec.container 'missing'" in p for p in child_problems(md, release()))

    md = model(template={"metadata": {"annotations": {"bad key!": "x"}}, "spec": _containers()})
    assert any("annotations" in p and "bad key!" in p for p in child_problems(md, release()))


def test_problems_with_names_stored_before_the_rules() -> None:
    """Objects admitted by an older CRD bypass the models' checks only if built
    without validation; child_problems still says what is wrong."""
    md = model()
    stale = ModelDeployment.model_construct(
        metadata=md.metadata.model_copy(update={"name": "fraud.eu"}),
        spec=md.spec,
        status=md.status,
    )
    problems = child_problems(stale)
    assert any("DNS-1035" in p for p in problems), problems
    assert any("Service name 'fraud.eu'" in p for p in problems), problems


def test_label_rules_match_the_api_server() -> None:
    assert is_label_value("") and is_label_value("a.b_c-d") and is_label_value("x" * 63)
    assert not is_label_value("x" * 64) and not is_label_value("-a") and not is_label_value("a b")
    assert is_qualified_name("slipway.dev/model") and is_qualified_name("team")
    assert not is_qualified_name("Slipway.dev/model") and not is_qualified_name("/x")
    assert not is_qualified_name("a/" + "x" * 64)


def _containers() -> dict[str, object]:
    return {"containers": [{"name": "server", "image": "srv:1"}]}


def test_any_admitted_pair_of_names_gives_a_valid_deployment_name() -> None:
    rng = random.Random(6)
    inner = "abcdefghijklmnopqrstuvwxyz0123456789-"

    def admitted(first: str, size: int) -> str:
        middle = "".join(rng.choice(inner) for _ in range(max(size - 2, 0)))
        return (rng.choice(first) + middle + rng.choice("ab9"))[:size]

    for _ in range(2000):
        model_name = admitted("abcxyz", rng.randint(1, 63))
        release_name = admitted("a9z0", rng.randint(1, 63))
        name = deployment_name(model_name, release_name)
        assert len(name) <= MAX_NAME and DNS_LABEL.fullmatch(name), (model_name, release_name)
