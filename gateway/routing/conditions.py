"""The declarative condition language of routing rules and workflow branches.

A condition is JSON, checked on save by ``validate_condition`` and turned into a closure at
snapshot build by ``compile_condition``; there is no eval, no template and no user code.

Grammar::

    condition := true                                    # matches every request
               | {"all": [condition, ...]}               # 1..50 items, every one matches
               | {"any": [condition, ...]}               # 1..50 items, at least one matches
               | {"not": condition}
               | {"field": FIELD, "op": OP, "value": JSON}   # no "value" for "exists"

Fields are those of ``FIELDS`` plus ``metadata.<key>[.<key>...]`` (keys match
``[A-Za-z0-9_-]{1,64}``, at most 8 of them). Operators are ``OPERATORS``. A condition is at
most 8 levels deep and has at most 200 nodes; ``in``/``not_in`` lists hold 1..256 items.
Values are JSON scalars (string, number, boolean), type-checked against the field; ``null``
is refused (use ``exists``) and booleans are never numbers.

Evaluation rules (a compiled predicate never raises, whatever the context holds):

* A field is *missing* when its key is absent or its value is ``None``; for ``metadata.a.b``
  also when ``metadata`` or ``metadata.a`` is not a mapping.
* ``exists`` is True exactly when the field is not missing.
* Every other operator is False on a missing field -- ``ne`` and ``not_in`` included, so
  ``ne`` is not the negation of ``eq``; wrap a condition in ``not`` for that.
* Equality is JSON-strict: a string equals only a string, a boolean only a boolean, a number
  only a number (``true`` never equals ``1``; ``1`` equals ``1.0``). A present value of another
  type makes ``eq``/``in`` False and ``ne``/``not_in`` True (their natural meaning).
* ``gt``/``gte``/``lt``/``lte`` are False unless the value is a number (not a boolean).
* ``contains`` is False unless the value is a list or tuple; it holds when an item equals the
  condition's value under the same strict equality.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

__all__ = [
    "FIELDS",
    "OPERATORS",
    "ConditionError",
    "FieldSpec",
    "Predicate",
    "compile_condition",
    "describe",
    "validate_condition",
]

Predicate = Callable[[Mapping[str, Any]], bool]
ValueTest = Callable[[Any], bool]
FieldKind = Literal["string", "number", "boolean", "string_list", "json"]

MAX_DEPTH: Final = 8
MAX_NODES: Final = 200
MAX_BRANCHES: Final = 50
MAX_LIST_ITEMS: Final = 256
MAX_METADATA_KEYS: Final = 8
MAX_METADATA_STRING: Final = 1000
ROOT_PATH: Final = "condition"

_EQUALITY = frozenset({"eq", "ne", "in", "not_in"})
_ORDERING = frozenset({"gt", "gte", "lt", "lte"})
OPERATORS: frozenset[str] = _EQUALITY | _ORDERING | {"exists", "contains"}
_COMBINATORS = ("all", "any", "not")
_LEAF_KEYS = frozenset({"field", "op", "value"})
_METADATA_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")

_KIND_OPERATORS: Mapping[str, frozenset[str]] = {
    "string": _EQUALITY | {"exists"},
    "number": _EQUALITY | _ORDERING | {"exists"},
    "boolean": frozenset({"eq", "ne", "exists"}),
    "string_list": frozenset({"contains", "exists"}),
    "json": OPERATORS,
}

# Mirror tenants.models.UserTier and gateway.models.Capability (a test keeps them in step);
# this module stays free of Django imports so the hot path and the console can share it.
USER_TIERS: Final = ("free", "standard", "premium", "enterprise")
COST_TIERS: Final = ("economy", "standard", "premium")
CAPABILITIES: Final = ("streaming", "tools", "vision", "json_mode", "embeddings")


class ConditionError(ValueError):
    """An invalid condition; ``path`` locates the offending node, e.g. ``condition.all[2].op``."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.detail = detail

    def __reduce__(self) -> tuple[type[ConditionError], tuple[str, str]]:
        return (type(self), (self.path, self.detail))


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A request-context field a condition may test: its type, operators and allowed values."""

    name: str
    kind: FieldKind
    description: str
    choices: tuple[str, ...] = ()
    max_length: int = 100

    @property
    def operators(self) -> frozenset[str]:
        return _KIND_OPERATORS[self.kind]


def _field(name: str, kind: FieldKind, description: str, **options: Any) -> FieldSpec:
    return FieldSpec(name=name, kind=kind, description=description, **options)


FIELDS: Mapping[str, FieldSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            _field("task_type", "string", "Task type (alias persona, use case) of the call."),
            _field("user_tier", "string", "End user's service tier.", choices=USER_TIERS),
            _field("model", "string", "Model name the client asked for.", max_length=200),
            _field("prompt_tokens", "number", "Estimated prompt tokens."),
            _field("max_tokens", "number", "Requested completion token limit."),
            _field("key_name", "string", "Name of the calling API key.", max_length=200),
            _field("team", "string", "Slug of the calling key's team."),
            _field(
                "capabilities",
                "string_list",
                "Capabilities the request needs.",
                choices=CAPABILITIES,
            ),
            _field("cost_tier", "string", "Cost tier the caller asked for.", choices=COST_TIERS),
            _field("stream", "boolean", "Whether the response is streamed."),
            _field(
                "metadata",
                "json",
                "A request metadata value, addressed as metadata.<key>[.<key>...].",
                max_length=MAX_METADATA_STRING,
            ),
        )
    }
)
_METADATA = FIELDS["metadata"]


# --- validation ---------------------------------------------------------------------------


def validate_condition(condition: Any) -> None:
    """Raise ``ConditionError`` (naming the path) unless ``condition`` is a valid condition."""
    _validate_node(condition, ROOT_PATH, 1, [0])


def _validate_node(node: Any, path: str, depth: int, count: list[int]) -> None:
    if depth > MAX_DEPTH:
        raise ConditionError(path, f"nested deeper than {MAX_DEPTH} levels")
    count[0] += 1
    if count[0] > MAX_NODES:
        raise ConditionError(path, f"more than {MAX_NODES} nodes in the condition")
    if node is True:
        return
    if not isinstance(node, dict):
        hint = "; only true (match everything) is allowed" if node is False else ""
        raise ConditionError(path, f"expected an object or true, got {_json_type(node)}{hint}")
    combinator = next((key for key in _COMBINATORS if key in node), None)
    if combinator is None:
        _validate_leaf(node, path)
        return
    extra = sorted((key for key in node if key != combinator), key=str)
    if extra:
        raise ConditionError(path, f"unknown key {extra[0]!r} beside {combinator!r}")
    child_path = f"{path}.{combinator}"
    if combinator == "not":
        _validate_node(node["not"], child_path, depth + 1, count)
        return
    children = node[combinator]
    if not isinstance(children, list):
        raise ConditionError(child_path, f"expected a list, got {_json_type(children)}")
    if not children or len(children) > MAX_BRANCHES:
        raise ConditionError(child_path, f"expected 1 to {MAX_BRANCHES} conditions")
    for index, child in enumerate(children):
        _validate_node(child, f"{child_path}[{index}]", depth + 1, count)


def _validate_leaf(node: dict[Any, Any], path: str) -> None:
    if not node:
        raise ConditionError(path, "expected a leaf (field, op, value) or one of all/any/not")
    extra = sorted((key for key in node if key not in _LEAF_KEYS), key=str)
    if extra:
        raise ConditionError(path, f"unknown key {extra[0]!r}; a leaf has field, op and value")
    for key in ("field", "op"):
        if key not in node:
            raise ConditionError(f"{path}.{key}", "required")
    spec, _ = _resolve_field(node["field"], f"{path}.field")
    op = node["op"]
    if not isinstance(op, str) or op not in OPERATORS:
        if not isinstance(op, str):
            raise ConditionError(f"{path}.op", f"expected a string, got {_json_type(op)}")
        raise ConditionError(f"{path}.op", f"unknown operator {op[:50]!r}")
    if op not in spec.operators:
        raise ConditionError(
            f"{path}.op", f"operator {op!r} does not apply to field {spec.name!r} ({spec.kind})"
        )
    value_path = f"{path}.value"
    if op == "exists":
        if "value" in node:
            raise ConditionError(value_path, "not allowed with operator 'exists'")
        return
    if "value" not in node:
        raise ConditionError(value_path, f"required with operator {op!r}")
    value = node["value"]
    if op in _ORDERING:
        _check_number(value, value_path)
    elif op in ("in", "not_in"):
        if not isinstance(value, list):
            raise ConditionError(value_path, f"expected a list, got {_json_type(value)}")
        if not value or len(value) > MAX_LIST_ITEMS:
            raise ConditionError(value_path, f"expected a list of 1 to {MAX_LIST_ITEMS} items")
        for index, item in enumerate(value):
            _check_scalar(spec, item, f"{value_path}[{index}]")
    else:
        _check_scalar(spec, value, value_path)


def _resolve_field(name: Any, path: str) -> tuple[FieldSpec, tuple[str, ...]]:
    """The field's spec and, for ``metadata.a.b``, its key path ``("a", "b")``."""
    if not isinstance(name, str):
        raise ConditionError(path, f"expected a string, got {_json_type(name)}")
    head, _, rest = name.partition(".")
    if head != "metadata":
        spec = FIELDS.get(name)
        if spec is None:
            raise ConditionError(path, f"unknown field {name[:100]!r}")
        return spec, ()
    keys = tuple(rest.split(".")) if rest else ()
    if not keys:
        raise ConditionError(path, "metadata needs a key, e.g. 'metadata.region'")
    if len(keys) > MAX_METADATA_KEYS:
        raise ConditionError(path, f"at most {MAX_METADATA_KEYS} metadata keys")
    for key in keys:
        if not _METADATA_KEY.fullmatch(key):
            raise ConditionError(
                path, f"invalid metadata key {key[:70]!r}; keys match [A-Za-z0-9_-]{{1,64}}"
            )
    return _METADATA, keys


def _check_scalar(spec: FieldSpec, value: Any, path: str) -> None:
    if spec.kind == "number":
        _check_number(value, path)
    elif spec.kind == "boolean":
        if not isinstance(value, bool):
            raise ConditionError(path, f"expected a boolean, got {_json_type(value)}")
    elif spec.kind == "json":
        if value is None:
            raise ConditionError(path, "null is not allowed; use the 'exists' operator")
        if isinstance(value, int | float) and not isinstance(value, bool):
            _check_number(value, path)
        elif isinstance(value, str):
            _check_string(spec, value, path)
        elif not isinstance(value, bool):
            raise ConditionError(
                path, f"expected a string, number or boolean, got {_json_type(value)}"
            )
    else:
        if not isinstance(value, str):
            raise ConditionError(path, f"expected a string, got {_json_type(value)}")
        _check_string(spec, value, path)


def _check_string(spec: FieldSpec, value: str, path: str) -> None:
    if spec.choices:
        if value not in spec.choices:
            choices = ", ".join(spec.choices)
            raise ConditionError(path, f"unknown {spec.name} {value[:50]!r}; one of: {choices}")
    elif len(value) > spec.max_length or (not value and spec.kind != "json"):
        raise ConditionError(path, f"expected a non-empty string of at most {spec.max_length}")


def _check_number(value: Any, path: str) -> None:
    if isinstance(value, bool):
        raise ConditionError(path, "expected a number, got boolean (booleans are not numbers)")
    if not isinstance(value, int | float):
        raise ConditionError(path, f"expected a number, got {_json_type(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConditionError(path, "expected a finite number")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# --- compilation --------------------------------------------------------------------------


def compile_condition(condition: Any) -> Predicate:
    """Validate ``condition`` and return a predicate over a request context that never raises."""
    validate_condition(condition)
    return _compile_node(condition)


def _always(context: Mapping[str, Any]) -> bool:
    return True


def _compile_node(node: Any) -> Predicate:
    if node is True:
        return _always
    if "not" in node:
        inner = _compile_node(node["not"])
        return lambda context: not inner(context)
    if "all" in node:
        return _compile_all([_compile_node(child) for child in node["all"]])
    if "any" in node:
        return _compile_any([_compile_node(child) for child in node["any"]])
    return _compile_leaf(node)


def _compile_all(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda context: first(context) and second(context)
    frozen = tuple(predicates)

    def every(context: Mapping[str, Any]) -> bool:
        # A plain loop: all() over a generator costs a generator object per call.
        for predicate in frozen:  # noqa: SIM110
            if not predicate(context):
                return False
        return True

    return every


def _compile_any(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda context: first(context) or second(context)
    frozen = tuple(predicates)

    def some(context: Mapping[str, Any]) -> bool:
        for predicate in frozen:  # noqa: SIM110
            if predicate(context):
                return True
        return False

    return some


def _compile_leaf(node: Mapping[str, Any]) -> Predicate:
    name: str = node["field"]
    _, keys = _resolve_field(name, ROOT_PATH)
    op: str = node["op"]
    if op == "exists":
        test: ValueTest = _is_present
    elif op in ("eq", "ne"):
        test = _equals(node["value"])
    elif op in ("in", "not_in"):
        test = _member_of(node["value"])
    elif op == "contains":
        test = _list_containing(_equals(node["value"]))
    else:
        test = _ORDER_TESTS[op](node["value"])
    negate = op in ("ne", "not_in")
    if keys:
        return _bind_metadata(keys, test, negate=negate)
    if negate:
        return lambda context: (value := context.get(name)) is not None and not test(value)
    return lambda context: (value := context.get(name)) is not None and test(value)


def _bind_metadata(keys: tuple[str, ...], test: ValueTest, *, negate: bool) -> Predicate:
    def leaf(context: Mapping[str, Any]) -> bool:
        value = context.get("metadata")
        for key in keys:
            if not isinstance(value, Mapping):
                return False
            value = value.get(key)
        if value is None:
            return False
        return not test(value) if negate else test(value)

    return leaf


def _is_present(value: Any) -> bool:
    return True  # the caller has already excluded None


def _equals(expected: Any) -> ValueTest:
    if isinstance(expected, bool):
        return lambda value: value is expected
    if isinstance(expected, str):
        return lambda value: isinstance(value, str) and value == expected
    return lambda value: (
        isinstance(value, int | float) and value.__class__ is not bool and value == expected
    )


def _member_of(items: list[Any]) -> ValueTest:
    strings = frozenset(item for item in items if isinstance(item, str))
    booleans = frozenset(item for item in items if isinstance(item, bool))
    numbers = frozenset(
        item for item in items if isinstance(item, int | float) and not isinstance(item, bool)
    )
    if not booleans and not numbers:
        return lambda value: isinstance(value, str) and value in strings

    def member(value: Any) -> bool:
        if isinstance(value, str):
            return value in strings
        if isinstance(value, bool):
            return value in booleans
        if isinstance(value, int | float):
            return value in numbers
        return False

    return member


def _list_containing(equals: ValueTest) -> ValueTest:
    return lambda value: isinstance(value, list | tuple) and any(equals(item) for item in value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and value.__class__ is not bool


def _greater(bound: float) -> ValueTest:
    return lambda value: _is_number(value) and value > bound


def _greater_or_equal(bound: float) -> ValueTest:
    return lambda value: _is_number(value) and value >= bound


def _less(bound: float) -> ValueTest:
    return lambda value: _is_number(value) and value < bound


def _less_or_equal(bound: float) -> ValueTest:
    return lambda value: _is_number(value) and value <= bound


_ORDER_TESTS: Mapping[str, Callable[[float], ValueTest]] = {
    "gt": _greater,
    "gte": _greater_or_equal,
    "lt": _less,
    "lte": _less_or_equal,
}


# --- description --------------------------------------------------------------------------

_SYMBOLS: Final = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_BARE_WORD = re.compile(r"[A-Za-z0-9_.:/@+-]+")
_LIST_SHOWN: Final = 5
_DESCRIPTION_LIMIT: Final = 300


def describe(condition: Any) -> str:
    """Short human text for route traces, e.g. ``prompt_tokens > 32000 and task_type = code``."""
    validate_condition(condition)
    text = _describe_node(condition)
    if len(text) > _DESCRIPTION_LIMIT:
        return text[: _DESCRIPTION_LIMIT - 1] + "…"
    return text


def _describe_node(node: Any) -> str:
    if node is True:
        return "always"
    if "not" in node:
        inner = node["not"]
        return f"not {_describe_operand(inner)}"
    for combinator, joiner in (("all", " and "), ("any", " or ")):
        if combinator in node:
            return joiner.join(_describe_operand(child) for child in node[combinator])
    field, op = node["field"], node["op"]
    if op == "exists":
        return f"{field} exists"
    value = node["value"]
    if op in ("in", "not_in"):
        shown = ", ".join(_describe_value(item) for item in value[:_LIST_SHOWN])
        if len(value) > _LIST_SHOWN:
            shown += f", … (+{len(value) - _LIST_SHOWN})"
        return f"{field} {op.replace('_', ' ')} [{shown}]"
    return f"{field} {_SYMBOLS.get(op, op)} {_describe_value(value)}"


def _describe_operand(node: Any) -> str:
    """A child's text, parenthesised when it is itself a multi-item and/or."""
    text = _describe_node(node)
    if isinstance(node, dict) and any(len(node.get(key, ())) > 1 for key in ("all", "any")):
        return f"({text})"
    return text


def _describe_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and _BARE_WORD.fullmatch(value):
        return value
    return json.dumps(value)
