"""Settings, auth, the engine command line, body preparation and metrics relabelling."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from gpu_worker.auth import Authenticator, resolve_token, token_id
from gpu_worker.cli import build_parser, settings_from_args
from gpu_worker.config import Mode, WorkerSettings
from gpu_worker.engine import engine_argv
from gpu_worker.metrics import relabel_engine_metrics
from gpu_worker.paths import EngineFiles
from gpu_worker.proxy import prepare_body
from gpu_worker.scheduler import FairScheduler
from gpu_worker.supervisor import ManagedModel
from moto import mock_aws
from prometheus_client.parser import text_string_to_metric_families

from spine.errors import AuthenticationError, ConfigError, InvalidRequestError
from spine.registry.schema import EngineConfig, ModelEntry


def entry(**engine: object) -> ModelEntry:
    return ModelEntry.model_validate(
        {
            "id": "m1",
            "provider": "llamacpp",
            "model": "m1",
            "context_window": 4096,
            "max_output_tokens": 300,
            "engine": {"gguf": {"file": "m.gguf"}, "context_size": 1024, **engine},
        }
    )


# --- settings ---------------------------------------------------------------------------


def test_settings_from_env_then_flags(tmp_path: Path) -> None:
    env = {
        "SPINE_WORKER_PORT": "9001",
        "SPINE_WORKER_MODE": "latency",
        "SPINE_WORKER_MODEL_DIRS": f"{tmp_path / 'a'}:{tmp_path / 'b'}",
        "SPINE_WORKER_IDLE_TTL_SECONDS": "30",
        "SPINE_WORKER_TIER_PRIORITIES": "gold=high,tin=low",
        "SPINE_LLAMA_SERVER": "/opt/llama-server",
        "SPINE_CACHE_DIR": str(tmp_path / "cache"),
    }
    settings = WorkerSettings.load({"port": 9002}, env=env)
    assert settings.port == 9002  # the flag wins over env
    assert settings.mode is Mode.LATENCY
    assert settings.model_dirs == [tmp_path / "a", tmp_path / "b"]
    assert settings.idle_ttl_seconds == 30
    assert settings.tier_priorities == {"gold": "high", "tin": "low"}
    assert settings.llama_server == Path("/opt/llama-server")
    assert settings.audit_log == tmp_path / "cache" / "worker-audit.jsonl"


def test_default_model_dirs_follow_the_cache_env(tmp_path: Path) -> None:
    settings = WorkerSettings.load({}, env={"XDG_CACHE_HOME": str(tmp_path)})
    assert settings.model_dirs == [tmp_path / "spine" / "models", Path("models")]


def test_bad_settings_name_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        WorkerSettings.load({}, env={"SPINE_WORKER_MODE": "turbo"})
    assert "SPINE_WORKER_MODE" in caught.value.problems[0]


def test_cli_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("SPINE_WORKER_"):
            monkeypatch.delenv(key)
    settings = settings_from_args(
        ["--port", "8099", "--models", "x.yaml", "--mode", "throughput", "--model-dir", "/m1",
         "--model-dir", "/m2", "--audit-log", "off", "--insecure-no-auth", "--no-preload",
         "--max-loaded-models", "3", "--idle-ttl", "5", "--queue-size", "7", "--grace", "2"]
    )  # fmt: skip
    assert settings.port == 8099 and settings.models_path == Path("x.yaml")
    assert settings.mode is Mode.THROUGHPUT
    assert settings.model_dirs == [Path("/m1"), Path("/m2")]
    assert settings.audit_log is None
    assert settings.insecure_no_auth and not settings.preload_default
    assert (settings.max_loaded_models, settings.idle_ttl_seconds) == (3, 5)
    assert (settings.queue_size, settings.grace_seconds) == (7, 2)
    assert "SPINE_WORKER_" in build_parser().format_help()


# --- auth -------------------------------------------------------------------------------


def test_no_token_refuses_to_start_unless_insecure() -> None:
    with pytest.raises(ConfigError, match="insecure-no-auth"):
        resolve_token(WorkerSettings.load({}, env={}))
    assert resolve_token(WorkerSettings.load({"insecure_no_auth": True}, env={})) is None
    assert resolve_token(WorkerSettings.load({}, env={"SPINE_WORKER_TOKEN": "t0k"})) == "t0k"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@mock_aws
def test_token_from_secrets_manager(aws: None) -> None:
    client = boto3.client("secretsmanager")
    client.create_secret(Name="spine/worker-token", SecretString="from-the-vault")
    client.create_secret(Name="spine/worker-json", SecretString=json.dumps({"token": "in-json"}))
    client.create_secret(Name="spine/worker-bad", SecretString=json.dumps({"nope": 1}))
    load = WorkerSettings.load
    assert resolve_token(load({"token_secret": "spine/worker-token"}, env={})) == "from-the-vault"
    assert resolve_token(load({"token_secret": "spine/worker-json"}, env={})) == "in-json"
    with pytest.raises(ConfigError, match="token"):
        resolve_token(load({"token_secret": "spine/worker-bad"}, env={}))
    # The env token wins over the secret
    assert resolve_token(load({"token": "env", "token_secret": "spine/worker-json"}, env={})) == (
        "env"
    )


def test_authenticator() -> None:
    auth = Authenticator("s3cret")
    principal = auth.authenticate("Bearer s3cret", "alice")
    assert principal.user == "alice" and principal.token_id == token_id("s3cret")
    assert "s3cret" not in principal.token_id
    for header in (None, "", "Bearer", "Bearer wrong", "Basic s3cret", "s3cret"):
        with pytest.raises(AuthenticationError):
            auth.authenticate(header, None)
    assert Authenticator(None).authenticate(None, None).token_id == "anonymous"


# --- engine command line ----------------------------------------------------------------


def test_engine_argv_passes_every_engine_setting(tmp_path: Path) -> None:
    engine = EngineConfig.model_validate(
        {
            "gguf": {"file": "m.gguf"},
            "context_size": 2048,
            "gpu_layers": -1,
            "threads": 3,
            "chat_template": "chatml",
            "embeddings": True,
            "pooling": "mean",
            "extra_args": ["--temp", "0.5"],
        }
    )
    files = EngineFiles(
        model=tmp_path / "m.gguf",
        draft=tmp_path / "d.gguf",
        lora=((tmp_path / "l1.gguf", 0.5), (tmp_path / "l2.gguf", 1.0)),
    )
    argv = engine_argv(
        binary=Path("llama-server"), model_id="m1", engine=engine, files=files, port=4321, slots=3
    )
    joined = " ".join(argv)

    def value(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    assert value("--host") == "127.0.0.1" and value("--port") == "4321"
    assert value("--parallel") == "3"
    assert value("--ctx-size") == str(2048 * 3)  # llama-server splits it across slots
    assert value("--n-gpu-layers") == "all"
    assert value("--threads") == "3" and value("--alias") == "m1"
    assert value("--model-draft") == str(tmp_path / "d.gguf")
    assert value("--spec-type") == "draft-simple"
    assert value("--lora-scaled") == f"{tmp_path / 'l1.gguf'}:0.5,{tmp_path / 'l2.gguf'}:1.0"
    assert value("--chat-template") == "chatml"
    assert value("--pooling") == "mean"
    for flag in ("--metrics", "--no-webui", "--embeddings", "--no-kv-unified", "--offline"):
        assert flag in argv
    assert joined.endswith("--temp 0.5")


# --- request bodies ---------------------------------------------------------------------


def managed(**engine: object) -> ManagedModel:
    return ManagedModel(entry(**engine), FairScheduler(2, 4, 10))


def test_prepare_body_passes_sampling_through() -> None:
    sampling = {
        "temperature": 0.7, "top_p": 0.9, "top_k": 20, "min_p": 0.05, "repeat_penalty": 1.1,
        "presence_penalty": 0.2, "frequency_penalty": 0.1, "mirostat": 2, "mirostat_tau": 5.0,
        "mirostat_eta": 0.1, "grammar": "root ::= \"a\"", "stop": ["\n"], "logit_bias": {"1": -5},
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
    }  # fmt: skip
    body = {"model": "alias", "messages": [{"role": "user", "content": "x"}], **sampling}
    out = prepare_body(body, managed(), "chat")
    assert out["model"] == "m1"
    assert {k: out[k] for k in sampling} == sampling
    assert out["max_tokens"] == 300  # the entry's max_output_tokens
    assert "cache_prompt" not in out


def test_prepare_body_seed_turns_prompt_cache_off_and_stream_asks_for_usage() -> None:
    body = {"model": "m1", "prompt": "x", "seed": 7, "stream": True, "max_tokens": 5}
    out = prepare_body(body, managed(), "completions")
    assert out["cache_prompt"] is False
    assert out["stream_options"] == {"include_usage": True}
    explicit = prepare_body({**body, "cache_prompt": True}, managed(), "completions")
    assert explicit["cache_prompt"] is True


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        ({"max_tokens": -3}, None),
        ({"max_tokens": 0}, None),
        ({"max_tokens": "ten"}, None),
        ({"max_tokens": True}, None),
        ({"max_tokens": 10**9}, "context_length_exceeded"),
        ({"max_completion_tokens": 5000}, "context_length_exceeded"),
        ({"messages": []}, None),
        ({"stream": "yes"}, None),
    ],
)
def test_prepare_body_rejects(patch: dict[str, object], code: str | None) -> None:
    body = {"model": "m1", "messages": [{"role": "user", "content": "x"}], **patch}
    with pytest.raises(InvalidRequestError) as caught:
        prepare_body(body, managed(), "chat")
    assert caught.value.status_code == 400
    if code:
        assert caught.value.code == code


# --- metrics ----------------------------------------------------------------------------


def test_engine_metrics_are_relabelled_and_valid() -> None:
    text = (
        "# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.\n"
        "# TYPE llamacpp:prompt_tokens_total counter\n"
        "llamacpp:prompt_tokens_total 10\n"
        'llamacpp:labelled{slot="1"} 2\n'
    )
    merged = relabel_engine_metrics([("a", text), ("b", text.replace("10", "20"))])
    assert merged.count("# TYPE llamacpp:prompt_tokens_total counter") == 1
    assert 'llamacpp:prompt_tokens_total{model="a"} 10' in merged
    assert 'llamacpp:prompt_tokens_total{model="b"} 20' in merged
    assert 'llamacpp:labelled{model="a",slot="1"} 2' in merged
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    samples = families["llamacpp:prompt_tokens"].samples
    assert sorted((s.labels["model"], s.value) for s in samples) == [("a", 10), ("b", 20)]
