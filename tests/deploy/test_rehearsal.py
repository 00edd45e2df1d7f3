"""`sam validate --lint` and `sam build` on this machine, without Docker or a Python
3.12: the template is valid for SAM, and the build holds one artifact per function and
the layer, where the built template points."""

from __future__ import annotations

import stat
import subprocess

from tests.deploy.conftest import REPO, Build, sam_env, template_functions


def test_sam_validate_lint_passes(sam: str) -> None:
    result = subprocess.run(
        [sam, "validate", "--lint", "--template", str(REPO / "template.yaml")],
        cwd=REPO,
        env=sam_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_build_makes_every_function_and_the_layer(lambda_build: Build) -> None:
    source = template_functions(REPO / "template.yaml")
    built = template_functions(lambda_build.template)
    # Then every function of the template was built, into its own folder
    assert set(built) == set(source)
    for name, properties in built.items():
        folder = lambda_build.template.parent / str(properties["CodeUri"])
        assert folder == lambda_build.function(name)
        handler = str(properties["Handler"])
        # An entry module (app.handler) or Lambda Web Adapter's startup script (run.sh)
        entry = folder / (
            handler if handler.endswith(".sh") else handler.split(".", maxsplit=1)[0] + ".py"
        )
        assert entry.is_file(), entry
        if entry.suffix == ".sh":
            assert entry.stat().st_mode & stat.S_IXUSR, f"{entry} is not executable"
        # holding only the function's own files
        assert {p.name for p in folder.iterdir()} == {
            p.name for p in (REPO / str(source[name]["CodeUri"])).iterdir()
        } - {"__pycache__"}
    # And the layer the functions use is the built one
    assert (lambda_build.layer / "python" / "spine" / "__init__.py").is_file()
