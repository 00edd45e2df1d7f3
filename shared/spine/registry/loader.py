"""Load and validate `models.yaml`, reporting every problem as `FILE:LINE: field: problem`.

PyYAML's composer keeps a line for every node; we build the plain data and, beside it,
a map from each data path (`("models", 2, "pricing", "input")`) to its line, so that
both pydantic's errors and the cross-entry checks below can name the exact line.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from spine.errors import ConfigError
from spine.registry.resolve import Registry
from spine.registry.schema import ModelsFile

DataPath = tuple[str | int, ...]


class _Located:
    """Plain YAML data plus the line (1-based) of every key and item."""

    def __init__(self) -> None:
        self.lines: dict[DataPath, int] = {}
        self.problems: list[tuple[DataPath, str]] = []

    def build(self, node: yaml.Node, path: DataPath) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = yaml.safe_load(yaml.serialize(key_node))
                child = (*path, key)
                self.lines[child] = key_node.start_mark.line + 1
                if key in result:
                    self.problems.append((child, "duplicate key"))
                result[key] = self.build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return yaml.safe_load(yaml.serialize(node))

    def line_of(self, path: DataPath) -> int:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1


def _field(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(file)"


def parse_registry(text: str, source: str = "models.yaml") -> Registry:
    """Validate the text of a models file; raise ConfigError listing every problem."""
    located = _Located()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{source}:{line}: (file): invalid YAML: {problem}"]) from exc
    if root is None:
        raise ConfigError([f"{source}:1: version: missing (the file is empty)"])
    data = located.build(root, ())
    if not isinstance(data, dict):
        raise ConfigError([f"{source}:1: (file): expected a mapping with 'version' and 'models'"])

    problems = list(located.problems)
    parsed: ModelsFile | None = None
    try:
        parsed = ModelsFile.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(p for p in error["loc"] if not _is_pydantic_tag(p))
            problems.append((loc, _message(error)))
    problems.extend(_cross_checks(data))

    if problems:
        # Stable order: by line, then by text.
        lines = sorted(
            {
                (located.line_of(path), f"{source}:{located.line_of(path)}: {_field(path)}: {msg}")
                for path, msg in problems
            }
        )
        raise ConfigError([text_line for _, text_line in lines])
    assert parsed is not None
    return Registry(parsed, source=source)


def load_registry(path: str | Path) -> Registry:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read: {exc.strerror or exc}"]) from exc
    return parse_registry(text, source=str(file))


def _is_pydantic_tag(part: Any) -> bool:
    # Union branches show up in `loc` as tags such as 'function-after[...]'.
    return isinstance(part, str) and ("[" in part and part.endswith("]"))


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "enum":
        allowed = error.get("ctx", {}).get("expected", "")
        return f"must be one of {allowed} (got {error.get('input')!r})"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _entries(data: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    models = data.get("models")
    if not isinstance(models, list):
        return []
    return [(i, m) for i, m in enumerate(models) if isinstance(m, dict)]


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _names(value: Any) -> list[tuple[int, str]]:
    if not isinstance(value, list):
        return []
    return [(j, v) for j, v in enumerate(value) if isinstance(v, str)]


def _cross_checks(data: dict[str, Any]) -> list[tuple[DataPath, str]]:
    """Rules across entries. They run on the raw data, tolerating wrong types that
    pydantic already reports, so one run lists every problem in the file."""
    problems: list[tuple[DataPath, str]] = []
    owner: dict[str, DataPath] = {}
    entries = _entries(data)
    profiles: dict[str, Any] = _mapping(data.get("profiles"))
    aliases: dict[str, Any] = _mapping(data.get("aliases"))

    def claim(name: Any, path: DataPath, what: str) -> None:
        if not isinstance(name, str):
            return
        if name in owner:
            where = _field(owner[name])
            problems.append((path, f"duplicate {what} '{name}' (already used at {where})"))
        else:
            owner[name] = path

    for i, entry in entries:
        claim(entry.get("id"), ("models", i, "id"), "id")
    for i, entry in entries:
        for j, alias in _names(entry.get("aliases")):
            claim(alias, ("models", i, "aliases", j), "alias")
    for name in profiles:
        claim(name, ("profiles", name), "profile name")
    for name in aliases:
        claim(name, ("aliases", name), "alias")

    ids = {e.get("id") for _, e in entries if isinstance(e.get("id"), str)}
    alias_target = {
        a: e["id"]
        for _, e in entries
        if isinstance(e.get("id"), str)
        for _, a in _names(e.get("aliases"))
    }

    def resolves(name: str) -> bool:
        return name in ids or name in alias_target

    for i, entry in entries:
        for j, target in _names(entry.get("fallbacks")):
            path: DataPath = ("models", i, "fallbacks", j)
            if not resolves(target):
                problems.append((path, f"fallback to a missing model '{target}'"))
            elif alias_target.get(target, target) == entry.get("id"):
                problems.append((path, f"a model cannot fall back to itself ('{target}')"))
    for name, profile in profiles.items():
        model = profile.get("model") if isinstance(profile, dict) else None
        if isinstance(model, str) and not resolves(model):
            problems.append((("profiles", name, "model"), f"unknown model '{model}'"))

    problems.extend(_alias_problems(aliases, profiles, resolves))
    for capability, target in _mapping(data.get("capabilities")).items():
        known = isinstance(target, str) and (resolves(target) or target in profiles)
        if isinstance(target, str) and not (known or target in aliases):
            problems.append((("capabilities", capability), f"unknown model '{target}'"))
    problems.extend(_fallback_cycles(entries, alias_target))
    return problems


def _alias_problems(
    aliases: dict[str, Any], profiles: dict[str, Any], resolves_to_model: Any
) -> list[tuple[DataPath, str]]:
    problems: list[tuple[DataPath, str]] = []
    reported: set[frozenset[str]] = set()
    for name, first in aliases.items():
        trail = [name]
        target = first
        while isinstance(target, str) and target in aliases and target not in trail:
            trail.append(target)
            target = aliases[target]
        path: DataPath = ("aliases", name)
        if not isinstance(target, str):
            continue
        if target in trail:
            cycle = frozenset(trail[trail.index(target) :])
            if cycle not in reported:
                reported.add(cycle)
                problems.append((path, "alias cycle: " + " -> ".join([*trail, target])))
        elif not (resolves_to_model(target) or target in profiles):
            problems.append((path, f"alias to an unknown model or profile '{target}'"))
    return problems


def _fallback_cycles(
    entries: list[tuple[int, dict[str, Any]]], alias_target: dict[str, str]
) -> list[tuple[DataPath, str]]:
    """Fallback chains must end: report each cycle once, at its first member."""
    edges: dict[str, list[str]] = {}
    index: dict[str, int] = {}
    for i, entry in entries:
        model_id = entry.get("id")
        if isinstance(model_id, str) and model_id not in edges:
            edges[model_id] = [alias_target.get(f, f) for _, f in _names(entry.get("fallbacks"))]
            index[model_id] = i
    problems: list[tuple[DataPath, str]] = []
    reported: set[frozenset[str]] = set()
    for start in edges:
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in edges.get(node, []):
                if nxt == start and len(trail) > 1:
                    cycle = frozenset(trail)
                    if cycle not in reported:
                        reported.add(cycle)
                        chain = " -> ".join([*trail, start])
                        problems.append(
                            (("models", index[start], "fallbacks"), f"fallback cycle: {chain}")
                        )
                elif nxt not in trail and nxt in edges:
                    stack.append((nxt, [*trail, nxt]))
    return problems
