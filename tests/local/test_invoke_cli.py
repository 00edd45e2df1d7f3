"""`spine invoke` and `spine local generate-event` as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE = FIXTURES / "template.yaml"


def _spine(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("spine")), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=False,
    )


def _event(tmp_path: Path, path: str = "/echo/7") -> Path:
    generated = _spine("local", "generate-event", "--path", path, "--template", str(TEMPLATE))
    assert generated.returncode == 0, generated.stderr
    event_file = tmp_path / "event.json"
    event_file.write_text(generated.stdout)
    return event_file


def test_generate_event_fills_the_route(tmp_path: Path) -> None:
    event = json.loads(_event(tmp_path).read_text())
    assert event["resource"] == "/echo/{id}"
    assert event["pathParameters"] == {"id": "7"}
    assert event["requestContext"]["stage"] == "test"


def test_invoke_prints_only_the_result(tmp_path: Path) -> None:
    result = _spine("invoke", "EchoFunction", "--event", str(_event(tmp_path)), "-t", str(TEMPLATE))
    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)  # nothing but the JSON result on stdout
    assert response["statusCode"] == 201
    body = json.loads(response["body"])
    assert body["event"]["pathParameters"] == {"id": "7"}
    # One function per process: its own variables apply at request time too.
    assert body["env"]["FIXTURE_ROLE"] == "echo"


def test_invoke_reads_stdin(tmp_path: Path) -> None:
    event = _event(tmp_path).read_text()
    result = _spine("invoke", "EchoFunction", "--event", "-", "-t", str(TEMPLATE), stdin=event)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["statusCode"] == 201


def test_invoke_handler_error_exits_1(tmp_path: Path) -> None:
    result = _spine("invoke", "BoomFunction", "--event", str(_event(tmp_path)), "-t", str(TEMPLATE))
    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert error["errorType"] == "RuntimeError"
    assert error["errorMessage"] == "the fixture exploded"
    assert "Traceback" in result.stderr


def test_invoke_unknown_function_lists_known_ones(tmp_path: Path) -> None:
    result = _spine("invoke", "Nope", "--event", str(_event(tmp_path)), "-t", str(TEMPLATE))
    assert result.returncode == 2
    assert "unknown function 'Nope'" in result.stderr
    assert "EchoFunction" in result.stderr and "SlowFunction" in result.stderr
    assert result.stdout == ""


def test_invoke_bad_event_files(tmp_path: Path) -> None:
    missing = _spine(
        "invoke", "EchoFunction", "--event", str(tmp_path / "none.json"), "-t", str(TEMPLATE)
    )
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    invalid = _spine("invoke", "EchoFunction", "--event", str(broken), "-t", str(TEMPLATE))
    assert invalid.returncode == 2
    assert "invalid JSON" in invalid.stderr


def test_missing_template_exits_2(tmp_path: Path) -> None:
    result = _spine(
        "invoke", "EchoFunction", "--event", "-", "-t", str(tmp_path / "t.yaml"), stdin="{}"
    )
    assert result.returncode == 2
    assert "not found" in result.stderr
