"""Where model files come from, and the rule that they never come from anywhere else.

A `gguf.file` is relative to the configured model directories (searched in order), or
to the folder of an installed Python package when `gguf.package` is set. Whatever the
spelling (`../`, a symlink, an absolute path), the file's real path must lie inside one
of those roots; otherwise a models.yaml edit could make the worker read any file the
process can. A file must also start with the GGUF magic before an engine is spent on it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gpu_worker.config import LLAMA_CPP_PYTHON_VERSION, cache_root
from gpu_worker.errors import (
    LlamaServerNotFoundError,
    ModelFileInvalidError,
    ModelFileNotFoundError,
    ModelPathForbiddenError,
)
from spine.registry.schema import EngineConfig, GgufSource

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class EngineFiles:
    """The resolved, checked files one engine needs."""

    model: Path
    draft: Path | None
    lora: tuple[tuple[Path, float], ...]


def package_root(package: str) -> Path:
    """The folder of an installed package, found without importing it.

    `find_spec` of a dotted name imports its parents; top-level names import nothing.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ModelFileNotFoundError(
            f"The Python package '{package}' that should hold the model file is not installed"
        )
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve()
    if spec.origin:
        return Path(spec.origin).resolve().parent
    raise ModelFileNotFoundError(f"The Python package '{package}' has no folder on disk")


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def confine(file: str, roots: Sequence[Path]) -> Path:
    """Resolve `file` against `roots` (in order); the real path must stay inside one.

    Raises ModelPathForbiddenError for an escape, ModelFileNotFoundError when no root
    holds the file.
    """
    roots = [Path(r).expanduser().resolve() for r in roots]
    given = Path(file).expanduser()
    candidates = [given] if given.is_absolute() else [root / given for root in roots]
    for candidate in candidates:
        # resolve() follows every symlink and `..`, so the check sees the real target.
        real = candidate.resolve()
        if not _inside(real, roots):
            raise ModelPathForbiddenError(
                f"The model path '{file}' resolves outside the model directories", param="model"
            )
        if real.exists():
            return real
    searched = ", ".join(str(r) for r in roots) or "(none configured)"
    raise ModelFileNotFoundError(f"The model file '{file}' was not found in: {searched}")


def check_gguf(path: Path) -> None:
    """Refuse anything that is not a readable file starting with the GGUF magic."""
    if not path.is_file():
        raise ModelFileInvalidError(f"The model path '{path.name}' is not a regular file")
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise ModelFileInvalidError(
            f"The model file '{path.name}' cannot be read: {exc.strerror}"
        ) from exc
    if magic != GGUF_MAGIC:
        raise ModelFileInvalidError(
            f"The model file '{path.name}' is not a GGUF file (it does not start with 'GGUF')"
        )


def resolve_source(source: GgufSource, model_dirs: Sequence[Path]) -> Path:
    roots = [package_root(source.package)] if source.package else list(model_dirs)
    path = confine(source.file, roots)
    check_gguf(path)
    return path


def resolve_engine_files(engine: EngineConfig, model_dirs: Sequence[Path]) -> EngineFiles:
    model = resolve_source(engine.gguf, model_dirs)
    draft = resolve_source(engine.draft, model_dirs) if engine.draft else None
    # LoRA adapters are GGUF files too, and live beside the base model.
    lora = tuple(
        (resolve_source(GgufSource(file=a.file, package=engine.gguf.package), model_dirs), a.scale)
        for a in engine.lora
    )
    return EngineFiles(model=model, draft=draft, lora=lora)


def find_llama_server(explicit: Path | None) -> Path:
    """`--llama-server` / `SPINE_LLAMA_SERVER`, else the build script's cache, else PATH."""
    if explicit is not None:
        candidates = [explicit.expanduser()]
    else:
        cached = cache_root() / f"llama.cpp-{LLAMA_CPP_PYTHON_VERSION}" / "bin" / "llama-server"
        on_path = shutil.which("llama-server")
        candidates = [cached, *([Path(on_path)] if on_path else [])]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise LlamaServerNotFoundError(
        f"llama-server was not found (tried: {tried}). Build it with "
        "gpu_worker/scripts/build_llama_server.sh, or set SPINE_LLAMA_SERVER to its path."
    )
