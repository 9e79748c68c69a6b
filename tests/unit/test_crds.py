"""The CRDs in crds/ are exactly what the models generate, and are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from slipway.api.crd import all_crds, crd_file_name, render
from slipway.api.durations import DURATION_PATTERN
from slipway.cli.main import main

CRDS = Path(__file__).resolve().parents[2] / "crds"


@pytest.mark.parametrize("crd", all_crds(), ids=crd_file_name)
def test_crd_file_matches_models(crd: dict[str, Any]) -> None:
    path = CRDS / crd_file_name(crd)
    assert path.exists(), f"{path} missing: run `slipway crds --out-dir crds`"
    assert path.read_text() == render(crd), f"{path} drifted: run `slipway crds --out-dir crds`"


def test_check_command_reports_drift(tmp_path: Path) -> None:
    assert main(["crds", "--out-dir", str(tmp_path)]) == 0
    assert main(["crds", "--check", str(tmp_path)]) == 0
    victim = tmp_path / crd_file_name(all_crds()[0])
    victim.write_text(victim.read_text().replace("integer", "string"))
    assert main(["crds", "--check", str(tmp_path)]) == 1


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found.extend(_walk(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_walk(value, f"{path}[{i}]"))
    return found


@pytest.mark.parametrize("crd", all_crds(), ids=crd_file_name)
def test_schema_is_structural(crd: dict[str, Any]) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(bound, True) is True, f"{bound} at {path} must be a boolean flag"
        for forbidden in ("$ref", "anyOf", "title", "const", "default"):
            assert forbidden not in node or path.endswith(".properties"), f"{forbidden} at {path}"
        if "properties" in node and not path.endswith(".properties"):
            assert node.get("type") == "object", f"{path} has properties but no type object"


def test_names_columns_and_category() -> None:
    by_kind = {crd["spec"]["names"]["kind"]: crd for crd in all_crds()}
    assert set(by_kind) == {"ModelDeployment", "ModelRelease", "RolloutPolicy"}
    for crd in by_kind.values():
        assert "slipway" in crd["spec"]["names"]["categories"]
        assert crd["spec"]["names"]["shortNames"]
    columns = {
        kind: [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
        for kind, crd in by_kind.items()
    }
    assert columns["ModelDeployment"][:3] == ["Tier", "Stable", "Ready"]
    for name in ("Deployment", "Version", "Phase", "Weight", "Step", "Verdict", "Age"):
        assert name in columns["ModelRelease"]
    assert by_kind["RolloutPolicy"]["spec"]["scope"] == "Cluster"
    assert "subresources" in by_kind["ModelRelease"]["spec"]["versions"][0]


def test_release_spec_is_immutable_by_cel() -> None:
    crd = next(c for c in all_crds() if c["spec"]["names"]["kind"] == "ModelRelease")
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [v["rule"] for v in spec["x-kubernetes-validations"]]
    assert "self == oldSelf" in rules


def test_rendered_yaml_round_trips() -> None:
    for crd in all_crds():
        assert yaml.safe_load(render(crd)) == crd


def _root(kind: str) -> dict[str, Any]:
    crd = next(c for c in all_crds() if c["spec"]["names"]["kind"] == kind)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_names_are_bounded_by_what_their_children_need() -> None:
    model_name = _root("ModelDeployment")["properties"]["metadata"]["properties"]["name"]
    assert model_name["maxLength"] == 63 and model_name["pattern"].startswith("^[a-z]")
    release_name = _root("ModelRelease")["properties"]["metadata"]["properties"]["name"]
    assert release_name["maxLength"] == 63 and "." not in release_name["pattern"]
    # The API server allows nothing but name (and generateName) under root metadata.
    for kind in ("ModelDeployment", "ModelRelease", "RolloutPolicy"):
        assert set(_root(kind)["properties"]["metadata"].get("properties", {})) <= {"name"}


def test_every_duration_is_bounded_by_cel() -> None:
    durations = [
        (path, node)
        for crd in all_crds()
        for path, node in _walk(crd)
        if node.get("pattern") == DURATION_PATTERN
    ]
    assert len(durations) >= 6, durations  # pause, interval, window, deadline, ...
    for path, node in durations:
        rules = [v["rule"] for v in node.get("x-kubernetes-validations", [])]
        assert any("duration('168h')" in rule for rule in rules), path
