"""A function pays only for the SDK its requests need (cold start), checked in a fresh
interpreter because this test process has imported every SDK already."""

from __future__ import annotations

import json
import subprocess
import sys

SDKS = ("openai", "google.genai", "anthropic")


def _modules_after(statements: str) -> dict[str, bool]:
    code = (
        "import json, sys\n"
        f"{statements}\n"
        f"print(json.dumps({{name: name in sys.modules for name in {list(SDKS)!r}}}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded: dict[str, bool] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_package_imports_no_sdk() -> None:
    loaded = _modules_after("import spine.providers")
    assert loaded == {"openai": False, "google.genai": False, "anthropic": False}


def test_openai_adapter_imports_only_openai() -> None:
    loaded = _modules_after(
        "from spine.providers import get_provider\n"
        "get_provider('openai'); get_provider('llamacpp'); get_provider('openai_compatible')"
    )
    assert loaded == {"openai": True, "google.genai": False, "anthropic": False}


def test_gemini_adapter_imports_only_google_genai() -> None:
    loaded = _modules_after("from spine.providers import get_provider\nget_provider('gemini')")
    assert loaded == {"openai": False, "google.genai": True, "anthropic": False}


def test_anthropic_adapter_imports_only_anthropic() -> None:
    loaded = _modules_after("from spine.providers import get_provider\nget_provider('anthropic')")
    assert loaded == {"openai": False, "google.genai": False, "anthropic": True}
