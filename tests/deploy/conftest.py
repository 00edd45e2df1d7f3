"""The deploy rehearsal's fixtures: the SAM CLI, and `sam build` of the template twice,
once for Lambda (arm64, CPython 3.12) and once for this machine (the same recipe with
this interpreter's wheels), each once per session.

The SAM CLI lives in its own virtualenv (`make sam-cli`; `SPINE_SAM` names it). Without
it these tests skip, unless `SPINE_REQUIRE_SAM` is set (as `make test` does): then they
fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Build:
    """What `sam build` left in `root`: the built template and one folder per resource."""

    root: Path

    @property
    def template(self) -> Path:
        return self.root / "template.yaml"

    @property
    def layer(self) -> Path:
        return self.root / "SpineLayer"

    @property
    def site(self) -> Path:
        """The layer's `python/` folder: Lambda puts /opt/python on sys.path."""
        return self.layer / "python"

    def function(self, logical_id: str) -> Path:
        return self.root / logical_id


def sam_env() -> dict[str, str]:
    """The environment of a SAM CLI run: no telemetry, a region for the linter."""
    return {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }


@pytest.fixture(scope="session")
def sam() -> str:
    cache = Path(
        os.environ.get("SPINE_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "spine"
    )
    candidates = [os.environ.get("SPINE_SAM"), *sorted(cache.glob("aws-sam-cli-*/bin/sam"))]
    for found in [*candidates, shutil.which("sam")]:
        if found and Path(found).is_file():
            return str(found)
    message = "the SAM CLI is not installed (make sam-cli)"
    if os.environ.get("SPINE_REQUIRE_SAM"):
        pytest.fail(message)
    pytest.skip(message)


def sam_build(sam: str, build_dir: Path, **environment: str) -> Build:
    result = subprocess.run(
        [
            sam,
            "build",
            "--build-in-source",
            "--build-dir",
            str(build_dir),
            "--template-file",
            str(REPO / "template.yaml"),
        ],
        cwd=REPO,
        env={**sam_env(), **environment},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return Build(build_dir)


@pytest.fixture(scope="session")
def lambda_build(sam: str, tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The layer and functions as `sam deploy` would upload them."""
    return sam_build(sam, tmp_path_factory.mktemp("sam-lambda"))


@pytest.fixture(scope="session")
def host_build(sam: str, tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The same recipe with this machine's wheels (LAYER_PLATFORM empty)."""
    return sam_build(sam, tmp_path_factory.mktemp("sam-host"), LAYER_PLATFORM="")


def template_functions(template: Path) -> dict[str, dict[str, object]]:
    """The functions of a (built) template, logical id to properties."""
    data = yaml.load(template.read_text(), Loader=_CfnLoader)
    return {
        name: resource.get("Properties") or {}
        for name, resource in data["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) read as plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


# The SAM transform as CloudFormation applies it (aws-sam-translator, from the SAM
# CLI's virtualenv), with local code folders replaced by S3 URIs as `sam package` does.
_TRANSLATE = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:
    def load(self):
        return {}

template = yaml_parse(open(sys.argv[1]).read())
for resource in template["Resources"].values():
    for key in ("CodeUri", "ContentUri"):
        if key in resource.get("Properties", {}):
            resource["Properties"][key] = "s3://bucket/" + key
print(json.dumps(transform(template, json.loads(sys.argv[2]), NoManagedPolicies())))
"""


@pytest.fixture(scope="session")
def cloudformation(sam: str) -> dict[str, Any]:
    """template.yaml after the SAM transform: the resources CloudFormation creates."""
    python = Path(sam).with_name("python")
    result = subprocess.run(
        [str(python), "-c", _TRANSLATE, str(REPO / "template.yaml"), "{}"],
        env=sam_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    translated: dict[str, Any] = json.loads(result.stdout)
    return translated
