"""The worker's packaging boundary: it depends on the shared core of the gateway's
package (`spine.errors`, `spine.registry`) and on its own server, never on a provider
SDK, psycopg or Powertools, and its images copy exactly that core."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.worker_infra.test_containers import DOCKERFILES, copy_sources, instructions

ROOT = Path(__file__).resolve().parents[2]
# Distributions of the gateway (the Lambda layer) the worker must not install.
GATEWAY_ONLY = {
    "openai",
    "google-genai",
    "anthropic",
    "psycopg",
    "psycopg-binary",
    "aws-lambda-powertools",
    "aws-xray-sdk",
    "mangum",
    "pyjwt",
    "toktok-rs",
    "pgserver",
}
# Their import names, refused in the import check below.
GATEWAY_MODULES = [
    "openai",
    "google",
    "anthropic",
    "psycopg",
    "aws_lambda_powertools",
    "mangum",
    "jwt",
    "toktok",
    "pgserver",
    "spine_tools",
]
SHARED_CORE = re.compile(r"^spine(\.errors|\.registry(\..+)?)?$")

# Imports every gpu_worker module with the gateway's packages made unimportable, then
# prints the spine modules that were loaded and the files they came from.
_IMPORT_CHECK = """
import importlib, importlib.abc, json, pkgutil, re, sys
blocked, core = set(json.loads(sys.argv[1])), re.compile(sys.argv[2])

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in blocked or (top == "spine" and not core.match(name)):
            raise ImportError(f"the worker imported {name}")
        return None

sys.meta_path.insert(0, Refuse())
import gpu_worker
for module in pkgutil.walk_packages(gpu_worker.__path__, "gpu_worker."):
    if not module.name.endswith("__main__"):  # runs the command line
        importlib.import_module(module.name)
gpu_worker.app.create_app
loaded = {n: m.__file__ for n, m in sys.modules.items() if n.split(".")[0] == "spine"}
print(json.dumps(loaded))
"""


def test_worker_extra_installs_no_gateway_distribution() -> None:
    # Given what the images install: the project's locked dependencies, `worker` extra
    exported = subprocess.run(
        [
            "uv",
            "export",
            "--frozen",
            "--no-dev",
            "--no-hashes",
            "--no-emit-project",
            "--extra",
            "worker",
            "--format",
            "requirements-txt",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {
        re.split(r"[=<>\[ ;]", line, maxsplit=1)[0].lower()
        for line in exported.splitlines()
        if line and not line.startswith(("#", " "))
    }
    # Then the control plane's server is there and nothing of the gateway is
    assert {"fastapi", "uvicorn", "pydantic", "pyyaml", "prometheus-client"} <= names
    assert names.isdisjoint(GATEWAY_ONLY), names & GATEWAY_ONLY


@pytest.fixture(scope="module")
def worker_spine_modules() -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK, json.dumps(GATEWAY_MODULES), SHARED_CORE.pattern],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, str] = json.loads(result.stdout)
    return loaded


def test_worker_imports_only_the_shared_core(worker_spine_modules: dict[str, str]) -> None:
    # When every worker module is imported with the gateway's packages refused
    # Then it imported, and of spine only errors and the registry were loaded
    assert {"spine.errors", "spine.registry", "spine.registry.schema"} <= set(worker_spine_modules)
    assert all(SHARED_CORE.match(name) for name in worker_spine_modules)


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_images_copy_the_shared_core_the_worker_loads(
    variant: str, worker_spine_modules: dict[str, str]
) -> None:
    # Given the files of shared/ a Dockerfile copies into the image
    copied: set[Path] = set()
    for keyword, args in instructions(DOCKERFILES[variant]):
        if keyword != "COPY" or "--from=" in args:
            continue
        for source in copy_sources(args)[1]:
            if source.startswith("shared/"):
                path = ROOT / source
                copied |= set(path.rglob("*.py")) if path.is_dir() else {path}
    # Then every spine module the worker loads is among them, and nothing of the
    # gateway beyond the core is copied
    loaded = {Path(file).resolve() for file in worker_spine_modules.values()}
    assert loaded <= copied, loaded - copied
    modules = {".".join(p.relative_to(ROOT / "shared").with_suffix("").parts) for p in copied}
    assert all(SHARED_CORE.match(name.removesuffix(".__init__")) for name in modules), modules
