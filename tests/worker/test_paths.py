"""Model path confinement and GGUF checks (no engine needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gpu_worker.errors import (
    LlamaServerNotFoundError,
    ModelFileInvalidError,
    ModelFileNotFoundError,
    ModelPathForbiddenError,
)
from gpu_worker.paths import (
    check_gguf,
    confine,
    find_llama_server,
    package_root,
    resolve_engine_files,
    resolve_source,
)

from spine.registry.schema import EngineConfig, GgufSource

GGUF = b"GGUF" + b"\0" * 28


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    first, second, outside = tmp_path / "first", tmp_path / "second", tmp_path / "outside"
    for d in (first, second, outside):
        d.mkdir()
    (first / "a.gguf").write_bytes(GGUF)
    (second / "b.gguf").write_bytes(GGUF)
    (second / "sub").mkdir()
    (second / "sub" / "c.gguf").write_bytes(GGUF)
    (outside / "secret.gguf").write_bytes(GGUF)
    return first, second, outside


def test_relative_file_found_in_any_dir_in_order(dirs: tuple[Path, Path, Path]) -> None:
    first, second, _ = dirs
    (second / "a.gguf").write_bytes(GGUF)
    assert confine("a.gguf", [first, second]) == (first / "a.gguf").resolve()
    assert confine("b.gguf", [first, second]) == (second / "b.gguf").resolve()
    assert confine("sub/c.gguf", [first, second]) == (second / "sub" / "c.gguf").resolve()


def test_dotdot_escape_is_refused(dirs: tuple[Path, Path, Path]) -> None:
    first, second, _ = dirs
    with pytest.raises(ModelPathForbiddenError) as caught:
        confine("../outside/secret.gguf", [first, second])
    assert caught.value.status_code == 403
    assert "outside the model directories" in caught.value.message


def test_dotdot_that_stays_inside_is_fine(dirs: tuple[Path, Path, Path]) -> None:
    _, second, _ = dirs
    assert confine("sub/../b.gguf", [second]) == (second / "b.gguf").resolve()


def test_symlink_pointing_outside_is_refused(dirs: tuple[Path, Path, Path]) -> None:
    first, _, outside = dirs
    (first / "link.gguf").symlink_to(outside / "secret.gguf")
    with pytest.raises(ModelPathForbiddenError):
        confine("link.gguf", [first])


def test_symlinked_directory_pointing_outside_is_refused(dirs: tuple[Path, Path, Path]) -> None:
    first, _, outside = dirs
    (first / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ModelPathForbiddenError):
        confine("linked/secret.gguf", [first])


def test_symlink_inside_the_dirs_is_fine(dirs: tuple[Path, Path, Path]) -> None:
    first, second, _ = dirs
    (first / "alias.gguf").symlink_to(second / "b.gguf")
    assert confine("alias.gguf", [first, second]) == (second / "b.gguf").resolve()


def test_absolute_paths(dirs: tuple[Path, Path, Path]) -> None:
    first, _, outside = dirs
    assert confine(str(first / "a.gguf"), [first]) == (first / "a.gguf").resolve()
    with pytest.raises(ModelPathForbiddenError):
        confine(str(outside / "secret.gguf"), [first])


def test_missing_file_names_the_dirs(dirs: tuple[Path, Path, Path]) -> None:
    first, second, _ = dirs
    with pytest.raises(ModelFileNotFoundError) as caught:
        confine("nope.gguf", [first, second])
    assert caught.value.status_code == 404
    assert str(first.resolve()) in caught.value.message


def test_magic_bytes(tmp_path: Path) -> None:
    good, text, empty = tmp_path / "g.gguf", tmp_path / "t.gguf", tmp_path / "e.gguf"
    good.write_bytes(GGUF)
    text.write_text("hello world")
    empty.write_bytes(b"")
    check_gguf(good)
    for bad in (text, empty, tmp_path):
        with pytest.raises(ModelFileInvalidError) as caught:
            check_gguf(bad)
        assert caught.value.status_code == 422


def test_package_source_confined_to_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an installed (importable) package holding a model file
    pkg = tmp_path / "site" / "spine_test_models_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "m.gguf").write_bytes(GGUF)
    (tmp_path / "site" / "other.gguf").write_bytes(GGUF)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    # Then the file resolves inside the package folder, without importing the package
    assert package_root("spine_test_models_pkg") == pkg.resolve()
    source = GgufSource(file="m.gguf", package="spine_test_models_pkg")
    assert resolve_source(source, []) == (pkg / "m.gguf").resolve()
    # And a path leaving the package folder is refused
    escape = GgufSource(file="../other.gguf", package="spine_test_models_pkg")
    with pytest.raises(ModelPathForbiddenError):
        resolve_source(escape, [])
    with pytest.raises(ModelFileNotFoundError, match="not installed"):
        package_root("spine_no_such_package_xyz")


def test_engine_files_resolve_draft_and_lora(dirs: tuple[Path, Path, Path]) -> None:
    first, second, _ = dirs
    engine = EngineConfig.model_validate(
        {
            "gguf": {"file": "a.gguf"},
            "draft": {"file": "b.gguf"},
            "lora": [{"file": "sub/c.gguf", "scale": 0.5}],
        }
    )
    files = resolve_engine_files(engine, [first, second])
    assert files.model == (first / "a.gguf").resolve()
    assert files.draft == (second / "b.gguf").resolve()
    assert files.lora == (((second / "sub" / "c.gguf").resolve(), 0.5),)


def test_missing_llama_server_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(LlamaServerNotFoundError) as caught:
        find_llama_server(tmp_path / "llama-server")
    assert "build_llama_server.sh" in caught.value.message
    assert "SPINE_LLAMA_SERVER" in caught.value.message
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert find_llama_server(binary) == binary
    os.chmod(binary, 0o644)
    with pytest.raises(LlamaServerNotFoundError):
        find_llama_server(binary)
