"""The few CloudFormation intrinsic functions the emulator needs to evaluate locally.

Only what can be known without a deployed stack: parameters (defaults and overrides),
pseudo parameters, conditions, `Fn::Sub`, `Fn::Join`, `Fn::Select`, `Fn::If`, and the
`Ref` and `Fn::GetAtt` of the resources the emulator made locally (queues and buckets
in its embedded AWS). Anything else (`Fn::ImportValue`, another resource's `Ref`) is
`UNRESOLVED`, and the caller decides what to do with it (an environment variable is
then left unset).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


UNRESOLVED: Final = _Marker("UNRESOLVED")
# `!Ref AWS::NoValue`: the property or list item disappears.
NO_VALUE: Final = _Marker("NO_VALUE")

# What `sam local` assumes when no AWS account is configured.
LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_REGION = "us-east-1"
LOCAL_STACK_NAME = "spine-local"

_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


@dataclass(frozen=True)
class LocalResource:
    """A template resource made locally: what its `Ref` and `GetAtt`s return."""

    ref: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Resolver:
    parameters: Mapping[str, str]
    conditions: Mapping[str, Any] = field(default_factory=dict)
    region: str = LOCAL_REGION
    resources: Mapping[str, LocalResource] = field(default_factory=dict)
    _condition_cache: dict[str, bool] = field(default_factory=dict)

    def pseudo(self, name: str) -> Any:
        return {
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::Region": self.region,
            "AWS::StackName": LOCAL_STACK_NAME,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{LOCAL_ACCOUNT_ID}:"
            f"stack/{LOCAL_STACK_NAME}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }.get(name, UNRESOLVED)

    def ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.resources[name].ref
        return self.pseudo(name)

    def attribute(self, resource: str, name: str) -> Any:
        made = self.resources.get(resource)
        return made.attributes.get(name, UNRESOLVED) if made is not None else UNRESOLVED

    def resolve(self, value: Any) -> Any:
        """Evaluate intrinsics in `value`; NO_VALUE items vanish from maps and lists."""
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref":
                    return self.ref(str(arg))
                if key.startswith("Fn::") or key == "Condition":
                    return self._function(key, arg)
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        return value

    def condition(self, name: str) -> bool:
        if name not in self._condition_cache:
            if name not in self.conditions:
                raise KeyError(f"unknown condition {name!r}")
            result = self.resolve(self.conditions[name])
            self._condition_cache[name] = bool(result) and result is not UNRESOLVED
        return self._condition_cache[name]

    def _function(self, key: str, arg: Any) -> Any:
        if key == "Condition":
            return self.condition(str(arg))
        if key == "Fn::If":
            name, if_true, if_false = arg
            return self.resolve(if_true if self.condition(name) else if_false)
        if key == "Fn::Equals":
            left, right = (self.resolve(a) for a in arg)
            if UNRESOLVED in (left, right):
                return UNRESOLVED
            return str(left) == str(right)
        if key == "Fn::Not":
            inner = self.resolve(arg[0])
            return UNRESOLVED if inner is UNRESOLVED else not inner
        if key in ("Fn::And", "Fn::Or"):
            values = [self.resolve(a) for a in arg]
            if UNRESOLVED in values:
                return UNRESOLVED
            return all(values) if key == "Fn::And" else any(values)
        if key == "Fn::GetAtt" and isinstance(arg, list) and len(arg) == 2:
            return self.attribute(str(arg[0]), str(arg[1]))
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::Join":
            delimiter, items = arg[0], self.resolve(arg[1])
            if not isinstance(items, list) or any(i is UNRESOLVED for i in items):
                return UNRESOLVED
            return str(delimiter).join(str(i) for i in items)
        if key == "Fn::Select":
            index, items = self.resolve(arg[0]), self.resolve(arg[1])
            if not isinstance(items, list) or index is UNRESOLVED:
                return UNRESOLVED
            return items[int(index)]
        return UNRESOLVED

    def _sub(self, arg: Any) -> Any:
        template, local_vars = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        values = {name: self.resolve(v) for name, v in dict(local_vars).items()}
        missing = False

        def replace(match: re.Match[str]) -> str:
            nonlocal missing
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} renders as ${Literal}
                return "${" + name[1:] + "}"
            if name in values:
                value = values[name]
            elif "." in name:
                value = self.attribute(*name.split(".", 1))
            else:
                value = self.ref(name)
            if value is UNRESOLVED or value is NO_VALUE:
                missing = True
                return ""
            return str(value)

        rendered = _SUB_VARIABLE.sub(replace, str(template))
        return UNRESOLVED if missing else rendered
