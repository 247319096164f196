"""The routing condition language: operators, combinators, validation paths, describe.

Pure unit tests (no database). The randomized test uses stdlib ``random`` with a fixed seed and
checks compiled predicates against a deliberately naive reference evaluator written here from
the rules in the module docstring.
"""

import math
import pickle
import random
from typing import Any

import pytest

from gateway.models import Capability
from gateway.routing.conditions import (
    FIELDS,
    OPERATORS,
    ConditionError,
    compile_condition,
    describe,
    validate_condition,
)
from tenants.models import UserTier

NO_VALUE = object()


def leaf(field: str, op: str, value: Any = NO_VALUE) -> dict[str, Any]:
    node: dict[str, Any] = {"field": field, "op": op}
    if value is not NO_VALUE:
        node["value"] = value
    return node


CODE = leaf("task_type", "eq", "code")
LONG = leaf("prompt_tokens", "gt", 32000)
CHEAP = leaf("cost_tier", "eq", "economy")

# (condition, context, expected)
OPERATOR_CASES = [
    # eq
    (CODE, {"task_type": "code"}, True),
    (CODE, {"task_type": "chat"}, False),
    (CODE, {}, False),
    (CODE, {"task_type": None}, False),
    (CODE, {"task_type": 1}, False),
    (CODE, {"task_type": ["code"]}, False),
    (leaf("prompt_tokens", "eq", 100), {"prompt_tokens": 100.0}, True),
    (leaf("prompt_tokens", "eq", 1), {"prompt_tokens": True}, False),
    (leaf("prompt_tokens", "eq", 1), {"prompt_tokens": "1"}, False),
    (leaf("stream", "eq", True), {"stream": True}, True),
    (leaf("stream", "eq", True), {"stream": False}, False),
    (leaf("stream", "eq", True), {"stream": 1}, False),
    (leaf("stream", "eq", False), {}, False),
    (leaf("user_tier", "eq", "premium"), {"user_tier": UserTier.PREMIUM}, True),
    # ne: natural meaning on present values, False when missing
    (leaf("task_type", "ne", "code"), {"task_type": "chat"}, True),
    (leaf("task_type", "ne", "code"), {"task_type": "code"}, False),
    (leaf("task_type", "ne", "code"), {}, False),
    (leaf("task_type", "ne", "code"), {"task_type": None}, False),
    (leaf("task_type", "ne", "code"), {"task_type": 5}, True),
    (leaf("stream", "ne", True), {"stream": False}, True),
    (leaf("stream", "ne", True), {"stream": 1}, True),
    (leaf("stream", "ne", True), {}, False),
    (leaf("max_tokens", "ne", 10), {"max_tokens": 10.0}, False),
    # in
    (leaf("task_type", "in", ["code", "review"]), {"task_type": "review"}, True),
    (leaf("task_type", "in", ["code", "review"]), {"task_type": "chat"}, False),
    (leaf("task_type", "in", ["code", "review"]), {}, False),
    (leaf("task_type", "in", ["code", "review"]), {"task_type": ["code"]}, False),
    (leaf("task_type", "in", ["code", "review"]), {"task_type": {"code": 1}}, False),
    (leaf("prompt_tokens", "in", [1, 2]), {"prompt_tokens": 2.0}, True),
    (leaf("prompt_tokens", "in", [1, 2]), {"prompt_tokens": True}, False),
    (leaf("prompt_tokens", "in", [1, 2]), {"prompt_tokens": 3}, False),
    (leaf("user_tier", "in", ["premium", "enterprise"]), {"user_tier": "enterprise"}, True),
    (leaf("user_tier", "in", ["premium", "enterprise"]), {"user_tier": "free"}, False),
    # not_in
    (leaf("task_type", "not_in", ["code"]), {"task_type": "chat"}, True),
    (leaf("task_type", "not_in", ["code"]), {"task_type": "code"}, False),
    (leaf("task_type", "not_in", ["code"]), {}, False),
    (leaf("task_type", "not_in", ["code"]), {"task_type": None}, False),
    (leaf("task_type", "not_in", ["code"]), {"task_type": 7}, True),
    (leaf("task_type", "not_in", ["code"]), {"task_type": ["code"]}, True),
    (leaf("prompt_tokens", "not_in", [1]), {"prompt_tokens": True}, True),
    # gt / gte / lt / lte
    (LONG, {"prompt_tokens": 32001}, True),
    (LONG, {"prompt_tokens": 32000}, False),
    (LONG, {"prompt_tokens": 1e9}, True),
    (LONG, {}, False),
    (LONG, {"prompt_tokens": None}, False),
    (LONG, {"prompt_tokens": "40000"}, False),
    (LONG, {"prompt_tokens": True}, False),
    (LONG, {"prompt_tokens": math.nan}, False),
    (LONG, {"prompt_tokens": [40000]}, False),
    (leaf("prompt_tokens", "gte", 32000), {"prompt_tokens": 32000}, True),
    (leaf("prompt_tokens", "gte", 32000), {"prompt_tokens": 31999}, False),
    (leaf("prompt_tokens", "gte", 32000), {"prompt_tokens": "x"}, False),
    (leaf("max_tokens", "lt", 1000), {"max_tokens": 999}, True),
    (leaf("max_tokens", "lt", 1000), {"max_tokens": 1000}, False),
    (leaf("max_tokens", "lt", 1000), {"max_tokens": False}, False),
    (leaf("max_tokens", "lt", 1000), {}, False),
    (leaf("max_tokens", "lte", 1000), {"max_tokens": 1000}, True),
    (leaf("max_tokens", "lte", 1000), {"max_tokens": 1000.5}, False),
    (leaf("max_tokens", "lte", 0.5), {"max_tokens": 0}, True),
    # exists
    (leaf("task_type", "exists"), {"task_type": "code"}, True),
    (leaf("task_type", "exists"), {"task_type": ""}, True),
    (leaf("task_type", "exists"), {"task_type": None}, False),
    (leaf("task_type", "exists"), {}, False),
    (leaf("stream", "exists"), {"stream": False}, True),
    (leaf("prompt_tokens", "exists"), {"prompt_tokens": 0}, True),
    (leaf("capabilities", "exists"), {"capabilities": []}, True),
    # contains
    (leaf("capabilities", "contains", "vision"), {"capabilities": ["tools", "vision"]}, True),
    (leaf("capabilities", "contains", "vision"), {"capabilities": ("vision",)}, True),
    (leaf("capabilities", "contains", "vision"), {"capabilities": ["tools"]}, False),
    (leaf("capabilities", "contains", "vision"), {"capabilities": []}, False),
    (leaf("capabilities", "contains", "vision"), {}, False),
    (leaf("capabilities", "contains", "vision"), {"capabilities": "vision"}, False),
    (leaf("capabilities", "contains", "vision"), {"capabilities": {"vision": 1}}, False),
    (leaf("capabilities", "contains", "vision"), {"capabilities": [None, 1, ["vision"]]}, False),
    # metadata, dotted paths
    (leaf("metadata.region", "eq", "eu"), {"metadata": {"region": "eu"}}, True),
    (leaf("metadata.region", "eq", "eu"), {"metadata": {"region": "us"}}, False),
    (leaf("metadata.region", "eq", "eu"), {"metadata": "eu"}, False),
    (leaf("metadata.region", "eq", "eu"), {}, False),
    (leaf("metadata.region.name", "eq", "eu"), {"metadata": {"region": {"name": "eu"}}}, True),
    (leaf("metadata.region.name", "eq", "eu"), {"metadata": {"region": "eu"}}, False),
    (leaf("metadata.region.name", "eq", "eu"), {"metadata": {"region": ["name"]}}, False),
    (leaf("metadata.region.name", "eq", "eu"), {"metadata": {"region.name": "eu"}}, False),
    (leaf("metadata.region.name", "exists"), {"metadata": {"region": {"name": 0}}}, True),
    (leaf("metadata.region.name", "exists"), {"metadata": {"region": {"name": None}}}, False),
    (leaf("metadata.region.name", "exists"), {"metadata": {"region": 3}}, False),
    (leaf("metadata.priority", "gt", 5), {"metadata": {"priority": 6}}, True),
    (leaf("metadata.priority", "gt", 5), {"metadata": {"priority": "6"}}, False),
    (leaf("metadata.beta", "eq", True), {"metadata": {"beta": True}}, True),
    (leaf("metadata.beta", "eq", True), {"metadata": {"beta": 1}}, False),
    (leaf("metadata.n", "eq", 1), {"metadata": {"n": True}}, False),
    (leaf("metadata.x", "ne", "a"), {"metadata": {"x": "b"}}, True),
    (leaf("metadata.x", "ne", "a"), {"metadata": {}}, False),
    (leaf("metadata.tags", "contains", "beta"), {"metadata": {"tags": ["beta"]}}, True),
    (leaf("metadata.ids", "contains", 1), {"metadata": {"ids": [True]}}, False),
    (leaf("metadata.ids", "contains", 1), {"metadata": {"ids": [1.0]}}, True),
    (leaf("metadata.t", "in", ["a", 1, True]), {"metadata": {"t": "a"}}, True),
    (leaf("metadata.t", "in", ["a", 1, True]), {"metadata": {"t": 1.0}}, True),
    (leaf("metadata.t", "in", ["a", 1, True]), {"metadata": {"t": True}}, True),
    (leaf("metadata.t", "in", ["a", 1, True]), {"metadata": {"t": False}}, False),
    (leaf("metadata.t", "in", ["a", 1, True]), {"metadata": {"t": "1"}}, False),
    (leaf("metadata.t", "in", ["a", 1, True]), {"metadata": {"t": [1]}}, False),
    (leaf("metadata.t", "not_in", ["a", 1]), {"metadata": {"t": True}}, True),
    (leaf("metadata.t", "not_in", ["a", 1]), {"metadata": {"t": 1}}, False),
    (leaf("metadata.k-1.v_2", "eq", "x"), {"metadata": {"k-1": {"v_2": "x"}}}, True),
]


@pytest.mark.parametrize(("condition", "context", "expected"), OPERATOR_CASES)
def test_operator(condition: Any, context: dict[str, Any], expected: bool) -> None:
    assert compile_condition(condition)(context) is expected


@pytest.mark.parametrize(
    ("condition", "matching", "other"),
    [
        (LONG, {"prompt_tokens": 50000}, {"prompt_tokens": 1000}),
        (CODE, {"task_type": "code"}, {"task_type": "summarize"}),
        (CHEAP, {"cost_tier": "economy"}, {"cost_tier": "premium"}),
    ],
)
def test_product_examples(condition: Any, matching: dict[str, Any], other: Any) -> None:
    predicate = compile_condition(condition)
    assert predicate(matching) is True
    assert predicate(other) is False
    assert predicate({}) is False


CONTEXT = {"task_type": "code", "prompt_tokens": 50000, "cost_tier": "premium", "stream": True}

# (condition, expected against CONTEXT)
COMBINATOR_CASES = [
    (True, True),
    ({"all": [True]}, True),
    ({"all": [CODE]}, True),
    ({"all": [CODE, LONG]}, True),
    ({"all": [CODE, CHEAP]}, False),
    ({"all": [CHEAP, CODE]}, False),
    ({"all": [CODE, LONG, True]}, True),
    ({"all": [CODE, LONG, CHEAP]}, False),
    ({"any": [CHEAP]}, False),
    ({"any": [CHEAP, CODE]}, True),
    ({"any": [CHEAP, leaf("stream", "eq", False)]}, False),
    ({"any": [CHEAP, leaf("stream", "eq", False), LONG]}, True),
    ({"any": [CHEAP, leaf("stream", "eq", False), leaf("team", "exists")]}, False),
    ({"not": CODE}, False),
    ({"not": CHEAP}, True),
    ({"not": True}, False),
    ({"not": {"not": CODE}}, True),
    ({"not": leaf("team", "eq", "ml")}, True),  # missing field: the leaf is False
    ({"any": [{"all": [CODE, CHEAP]}, {"not": LONG}]}, False),
    ({"any": [{"all": [CODE, LONG]}, {"not": LONG}]}, True),
    ({"all": [{"any": [CHEAP, CODE]}, {"not": {"any": [CHEAP, leaf("team", "exists")]}}]}, True),
]


@pytest.mark.parametrize(("condition", "expected"), COMBINATOR_CASES)
def test_combinators(condition: Any, expected: bool) -> None:
    assert compile_condition(condition)(CONTEXT) is expected


@pytest.mark.parametrize("context", [{}, CONTEXT, {"metadata": None}, {"anything": object()}])
def test_true_matches_every_context(context: dict[str, Any]) -> None:
    assert compile_condition(True)(context) is True


def nest_not(levels: int) -> Any:
    node: Any = CODE
    for _ in range(levels):
        node = {"not": node}
    return node


def block(size: int) -> dict[str, Any]:
    return {"all": [CODE] * size}


# (condition, path, detail)
VALIDATION_ERRORS = [
    (leaf("colour", "eq", "red"), "condition.field", "unknown field 'colour'"),
    (
        {"all": [CODE, leaf("nope", "exists")]},
        "condition.all[1].field",
        "unknown field 'nope'",
    ),
    (leaf(3, "eq", "x"), "condition.field", "expected a string, got number"),  # type: ignore[arg-type]
    (
        leaf("metadata", "eq", "x"),
        "condition.field",
        "metadata needs a key, e.g. 'metadata.region'",
    ),
    (
        leaf("metadata.a b", "eq", "x"),
        "condition.field",
        "invalid metadata key 'a b'; keys match [A-Za-z0-9_-]{1,64}",
    ),
    (
        leaf("metadata.a..b", "eq", "x"),
        "condition.field",
        "invalid metadata key ''; keys match [A-Za-z0-9_-]{1,64}",
    ),
    (
        leaf("metadata." + "k" * 65, "eq", "x"),
        "condition.field",
        f"invalid metadata key {'k' * 65!r}; keys match [A-Za-z0-9_-]{{1,64}}",
    ),
    (leaf("metadata" + ".k" * 9, "eq", "x"), "condition.field", "at most 8 metadata keys"),
    (
        {"all": [True, True, leaf("task_type", "like", "c%")]},
        "condition.all[2].op",
        "unknown operator 'like'",
    ),
    (leaf("task_type", None, "x"), "condition.op", "expected a string, got null"),  # type: ignore[arg-type]
    (
        leaf("task_type", "gt", 1),
        "condition.op",
        "operator 'gt' does not apply to field 'task_type' (string)",
    ),
    (
        leaf("capabilities", "eq", "vision"),
        "condition.op",
        "operator 'eq' does not apply to field 'capabilities' (string_list)",
    ),
    (
        leaf("stream", "in", [True]),
        "condition.op",
        "operator 'in' does not apply to field 'stream' (boolean)",
    ),
    ({"field": "task_type", "value": "x"}, "condition.op", "required"),
    ({"op": "eq", "value": "x"}, "condition.field", "required"),
    (leaf("task_type", "eq"), "condition.value", "required with operator 'eq'"),
    ({"not": leaf("prompt_tokens", "gt")}, "condition.not.value", "required with operator 'gt'"),
    (leaf("task_type", "exists", True), "condition.value", "not allowed with operator 'exists'"),
    (leaf("task_type", "in", "code"), "condition.value", "expected a list, got string"),
    (leaf("task_type", "not_in", {"a": 1}), "condition.value", "expected a list, got object"),
    (leaf("task_type", "in", []), "condition.value", "expected a list of 1 to 256 items"),
    (
        leaf("prompt_tokens", "in", list(range(257))),
        "condition.value",
        "expected a list of 1 to 256 items",
    ),
    (leaf("prompt_tokens", "in", [1, "2"]), "condition.value[1]", "expected a number, got string"),
    (
        leaf("user_tier", "not_in", ["free", "gold"]),
        "condition.value[1]",
        "unknown user_tier 'gold'; one of: free, standard, premium, enterprise",
    ),
    (leaf("prompt_tokens", "gt", "32000"), "condition.value", "expected a number, got string"),
    (leaf("metadata.n", "lte", None), "condition.value", "expected a number, got null"),
    (leaf("max_tokens", "eq", [1]), "condition.value", "expected a number, got list"),
    (
        leaf("prompt_tokens", "gt", True),
        "condition.value",
        "expected a number, got boolean (booleans are not numbers)",
    ),
    (
        leaf("prompt_tokens", "eq", False),
        "condition.value",
        "expected a number, got boolean (booleans are not numbers)",
    ),
    (
        leaf("metadata.n", "gte", True),
        "condition.value",
        "expected a number, got boolean (booleans are not numbers)",
    ),
    (leaf("prompt_tokens", "gt", math.inf), "condition.value", "expected a finite number"),
    (leaf("task_type", "eq", 5), "condition.value", "expected a string, got number"),
    (
        leaf("task_type", "eq", ""),
        "condition.value",
        "expected a non-empty string of at most 100",
    ),
    (
        leaf("task_type", "eq", "x" * 101),
        "condition.value",
        "expected a non-empty string of at most 100",
    ),
    (
        leaf("cost_tier", "eq", "cheap"),
        "condition.value",
        "unknown cost_tier 'cheap'; one of: economy, standard, premium",
    ),
    (
        leaf("capabilities", "contains", "telepathy"),
        "condition.value",
        "unknown capabilities 'telepathy'; one of: streaming, tools, vision, json_mode, embeddings",
    ),
    (leaf("stream", "eq", "yes"), "condition.value", "expected a boolean, got string"),
    (
        leaf("metadata.x", "eq", None),
        "condition.value",
        "null is not allowed; use the 'exists' operator",
    ),
    (
        leaf("metadata.x", "contains", ["a"]),
        "condition.value",
        "expected a string, number or boolean, got list",
    ),
    (nest_not(8), "condition" + ".not" * 8, "nested deeper than 8 levels"),
    (
        {"all": [block(50)] * 4},
        "condition.all[3].all[45]",
        "more than 200 nodes in the condition",
    ),
    ({"all": []}, "condition.all", "expected 1 to 50 conditions"),
    ({"any": []}, "condition.any", "expected 1 to 50 conditions"),
    ({"any": [CODE] * 51}, "condition.any", "expected 1 to 50 conditions"),
    ({"any": CODE}, "condition.any", "expected a list, got object"),
    ({"all": [CODE, "task_type"]}, "condition.all[1]", "expected an object or true, got string"),
    ({"not": [CODE]}, "condition.not", "expected an object or true, got list"),
    (None, "condition", "expected an object or true, got null"),
    (1, "condition", "expected an object or true, got number"),
    (
        False,
        "condition",
        "expected an object or true, got boolean; only true (match everything) is allowed",
    ),
    (
        {**CODE, "negate": True},
        "condition",
        "unknown key 'negate'; a leaf has field, op and value",
    ),
    ({"all": [True], "any": [True]}, "condition", "unknown key 'any' beside 'all'"),
    ({"not": CODE, "field": "x"}, "condition", "unknown key 'field' beside 'not'"),
    ({}, "condition", "expected a leaf (field, op, value) or one of all/any/not"),
]


@pytest.mark.parametrize(("condition", "path", "detail"), VALIDATION_ERRORS)
def test_validation_error(condition: Any, path: str, detail: str) -> None:
    with pytest.raises(ConditionError) as excinfo:
        validate_condition(condition)
    assert excinfo.value.path == path
    assert excinfo.value.detail == detail
    assert str(excinfo.value) == f"{path}: {detail}"
    with pytest.raises(ConditionError):
        compile_condition(condition)


@pytest.mark.parametrize(
    "condition",
    [
        True,
        nest_not(7),  # 8 levels, the leaf included
        {"all": [block(50)] * 3 + [block(45)]},  # exactly 200 nodes
        {"any": [CODE] * 50},
        leaf("prompt_tokens", "in", list(range(256))),
        leaf("metadata" + ".k" * 8, "eq", ""),
        leaf("metadata." + "k" * 64, "eq", 1.5),
        leaf("task_type", "eq", "x" * 100),
        leaf("model", "eq", "m" * 200),
        leaf("capabilities", "exists"),
        leaf("stream", "ne", False),
        leaf("max_tokens", "gte", 0.5),
    ],
)
def test_valid_at_the_limits(condition: Any) -> None:
    validate_condition(condition)
    assert compile_condition(condition)({}) in (True, False)


def test_condition_error_is_a_value_error_that_pickles() -> None:
    with pytest.raises(ValueError, match=r"^condition\.op: required$"):
        validate_condition({"field": "task_type"})
    error = ConditionError("condition.all[0]", "boom")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (copy.path, copy.detail, str(copy)) == (error.path, error.detail, str(error))


def test_fields_and_operators_catalogue() -> None:
    assert set(OPERATORS) == {
        "eq",
        "ne",
        "in",
        "not_in",
        "gt",
        "gte",
        "lt",
        "lte",
        "exists",
        "contains",
    }
    assert set(FIELDS) == {
        "task_type",
        "user_tier",
        "model",
        "prompt_tokens",
        "max_tokens",
        "key_name",
        "team",
        "capabilities",
        "cost_tier",
        "stream",
        "metadata",
    }
    assert FIELDS["user_tier"].choices == tuple(tier.value for tier in UserTier)
    assert set(FIELDS["capabilities"].choices) == set(Capability.values)
    assert FIELDS["prompt_tokens"].operators >= {"gt", "gte", "lt", "lte"}
    assert FIELDS["metadata"].operators == OPERATORS
    with pytest.raises(TypeError):
        FIELDS["x"] = FIELDS["team"]  # type: ignore[index]


# --- describe -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "text"),
    [
        (
            {"all": [LONG, leaf("task_type", "in", ["code", "review"])]},
            "prompt_tokens > 32000 and task_type in [code, review]",
        ),
        (True, "always"),
        (CHEAP, "cost_tier = economy"),
        (leaf("stream", "ne", False), "stream != false"),
        (leaf("max_tokens", "lte", 4096), "max_tokens <= 4096"),
        (leaf("team", "exists"), "team exists"),
        (leaf("capabilities", "contains", "vision"), "capabilities contains vision"),
        (leaf("metadata.region", "eq", "eu west"), 'metadata.region = "eu west"'),
        (
            leaf("task_type", "not_in", list("abcdefg")),
            "task_type not in [a, b, c, d, e, … (+2)]",
        ),
        (
            {
                "all": [
                    leaf("stream", "eq", True),
                    {"any": [CHEAP, leaf("user_tier", "eq", "free")]},
                ]
            },
            "stream = true and (cost_tier = economy or user_tier = free)",
        ),
        ({"not": {"any": [CODE, LONG]}}, "not (task_type = code or prompt_tokens > 32000)"),
        ({"not": CODE}, "not task_type = code"),
        ({"all": [{"any": [CODE]}]}, "task_type = code"),
    ],
)
def test_describe(condition: Any, text: str) -> None:
    assert describe(condition) == text


def test_describe_is_short_and_validates() -> None:
    text = describe({"any": [leaf("model", "eq", f"model-{i}") for i in range(50)]})
    assert len(text) == 300
    assert text.endswith("…")
    with pytest.raises(ConditionError, match="unknown operator 'like'"):
        describe(leaf("task_type", "like", "x"))


# --- randomized ---------------------------------------------------------------------------

STRINGS = ["code", "chat", "review", "gpt-4o", "summarize"]
NUMBERS = [0, 1, 1.0, -3, 0.5, 4096, 32000, 10**12]
METADATA_SCALARS = ["eu", "us", "", 1, 2.5, 0, True, False]
METADATA_KEYS = ["region", "name", "tier", "tags"]
WEIRD = [
    None,
    True,
    False,
    0,
    1,
    1.0,
    -0.0,
    32001,
    10**30,
    math.nan,
    math.inf,
    "",
    "code",
    "economy",
    "vision",
    "premium",
    [],
    ["tools", "vision"],
    [1, True, None],
    ("vision",),
    {},
    {"region": "eu"},
    object(),
    b"code",
    {"a", "b"},
]


def random_value(rng: random.Random, field: str) -> Any:
    spec = FIELDS[field.partition(".")[0]]
    if spec.choices:
        return rng.choice(spec.choices)
    if spec.kind == "number":
        return rng.choice(NUMBERS)
    if spec.kind == "boolean":
        return rng.choice([True, False])
    if spec.kind == "json":
        return rng.choice(METADATA_SCALARS)
    return rng.choice(STRINGS)


def random_leaf(rng: random.Random) -> dict[str, Any]:
    field = rng.choice(sorted(FIELDS))
    if field == "metadata":
        field += "." + ".".join(rng.choices(METADATA_KEYS, k=rng.randint(1, 3)))
    op = rng.choice(sorted(FIELDS[field.partition(".")[0]].operators))
    if op == "exists":
        return leaf(field, op)
    if op in ("in", "not_in"):
        return leaf(field, op, [random_value(rng, field) for _ in range(rng.randint(1, 4))])
    if op in ("gt", "gte", "lt", "lte"):
        return leaf(field, op, rng.choice(NUMBERS))
    return leaf(field, op, random_value(rng, field))


def random_condition(rng: random.Random, depth: int = 1) -> Any:
    roll = rng.random()
    if depth >= 4 or roll < 0.45:
        return random_leaf(rng)
    if roll < 0.5:
        return True
    if roll < 0.65:
        return {"not": random_condition(rng, depth + 1)}
    combinator = rng.choice(["all", "any"])
    return {combinator: [random_condition(rng, depth + 1) for _ in range(rng.randint(1, 4))]}


def random_metadata(rng: random.Random, depth: int = 0) -> Any:
    if depth >= 3 or rng.random() < 0.3:
        return rng.choice(WEIRD + METADATA_SCALARS)
    return {key: random_metadata(rng, depth + 1) for key in rng.sample(METADATA_KEYS, 2)}


def random_context(rng: random.Random) -> dict[str, Any]:
    context: dict[str, Any] = {}
    for field in FIELDS:
        if rng.random() < 0.3:
            continue
        if field == "metadata":
            context[field] = random_metadata(rng)
        elif field == "capabilities":
            context[field] = rng.choice([rng.sample(FIELDS[field].choices, 2), *WEIRD])
        else:
            context[field] = rng.choice([random_value(rng, field), rng.choice(WEIRD)])
    return context


def strictly_equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool):
        return isinstance(actual, bool) and actual == expected
    if isinstance(expected, str):
        return isinstance(actual, str) and actual == expected
    return isinstance(actual, int | float) and not isinstance(actual, bool) and actual == expected


def reference(condition: Any, context: dict[str, Any]) -> bool:
    """The documented rules, written naively: the compiled predicates must agree."""
    if condition is True:
        return True
    if "not" in condition:
        return not reference(condition["not"], context)
    if "all" in condition:
        return all(reference(child, context) for child in condition["all"])
    if "any" in condition:
        return any(reference(child, context) for child in condition["any"])
    head, *keys = condition["field"].split(".")
    actual = context.get(head)
    for key in keys:
        actual = actual.get(key) if isinstance(actual, dict) else None
    op, expected = condition["op"], condition.get("value")
    if actual is None:
        return False
    is_number = isinstance(actual, int | float) and not isinstance(actual, bool)
    return {
        "exists": lambda: True,
        "eq": lambda: strictly_equal(actual, expected),
        "ne": lambda: not strictly_equal(actual, expected),
        "in": lambda: any(strictly_equal(actual, item) for item in expected),
        "not_in": lambda: not any(strictly_equal(actual, item) for item in expected),
        "gt": lambda: is_number and actual > expected,
        "gte": lambda: is_number and actual >= expected,
        "lt": lambda: is_number and actual < expected,
        "lte": lambda: is_number and actual <= expected,
        "contains": lambda: (
            isinstance(actual, list | tuple)
            and any(strictly_equal(item, expected) for item in actual)
        ),
    }[op]()


def test_random_conditions_never_raise_and_match_the_reference() -> None:
    rng = random.Random(20240601)
    outcomes = set()
    for _ in range(2000):
        condition = random_condition(rng)
        predicate = compile_condition(condition)
        negated = compile_condition({"not": condition})
        describe(condition)
        for _ in range(3):
            context = random_context(rng)
            result = predicate(context)
            assert type(result) is bool, (condition, context)
            assert result == reference(condition, context), (condition, context)
            assert negated(context) is (not result), (condition, context)
            outcomes.add(result)
        assert predicate({}) in (True, False)
    assert outcomes == {True, False}
