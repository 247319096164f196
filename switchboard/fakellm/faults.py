"""Fault directives: how a request asks the fake upstream to misbehave.

Directives ride on the model name after ``@`` (``gpt-4o-mini@status=429,retry_after=2``) so a
gateway deployment can point at a faulty "model", and/or in an ``x-fake-fault`` request header
with the same comma-separated syntax; header directives override model directives key by key.

========================  ==============================================================
``latency=MS``            wait MS milliseconds before the response starts
``chunk_delay=MS``        wait MS milliseconds between stream chunks
``status=CODE``           answer with HTTP CODE (400-599) and the format's error body
``retry_after=S``         add ``Retry-After: S`` to a ``status`` error (429/503)
``fail_first=N``          with ``status``: only the first N requests for this exact model
                          string (and header) fail, since start or the last reset
``fail_every=N``          with ``status``: every Nth request for this exact model string
                          (and header) fails — a steady error rate of 1/N
``hang``                  never answer (until the client goes away or the server stops)
``truncate``              stream: stop after about half the content and drop the connection;
                          non-stream: a cut JSON body
``malformed``             stream: one invalid-JSON chunk midway; non-stream: invalid JSON
``tokens=N``              natural reply length of N tokens (still capped by max_tokens)
========================  ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from switchboard.fakellm.replies import MAX_REPLY_TOKENS

FAULT_HEADER = "x-fake-fault"
MAX_DELAY_MS = 600_000

# name -> (min, max) for integer directives; flags take no value.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "latency": (0, MAX_DELAY_MS),
    "chunk_delay": (0, MAX_DELAY_MS),
    "status": (400, 599),
    "fail_first": (0, 1_000_000),
    "fail_every": (1, 1_000_000),
    "tokens": (1, MAX_REPLY_TOKENS),
}
_FLAGS = frozenset({"hang", "truncate", "malformed"})
KNOWN = tuple(sorted({*_INT_RANGES, *_FLAGS, "retry_after"}))


class DirectiveError(ValueError):
    """A fault directive the fake does not understand; reported to the client as a 400."""


@dataclass(frozen=True, slots=True)
class Faults:
    """The merged, validated fault directives of one request."""

    latency: int = 0
    chunk_delay: int = 0
    status: int | None = None
    retry_after: str | None = None
    fail_first: int | None = None
    fail_every: int | None = None
    hang: bool = False
    truncate: bool = False
    malformed: bool = False
    tokens: int | None = None


NO_FAULTS = Faults()


def split_model(model: str) -> tuple[str, str]:
    """``"gpt@status=500"`` -> ``("gpt", "status=500")``; no ``@`` means no directives."""
    base, _, directives = model.partition("@")
    return base, directives


def resolve(model_directives: str, header: str | None) -> Faults:
    """Merge model and header directives (header wins) into validated ``Faults``.

    Raises ``DirectiveError`` for unknown or malformed directives.
    """
    if not model_directives and not header:
        return NO_FAULTS  # the hot path: a plain model name and no header
    return _resolve_cached(model_directives, header or "")


@lru_cache(maxsize=1024)
def _resolve_cached(model_directives: str, header: str) -> Faults:
    merged = {**_parse(model_directives), **_parse(header)}
    faults = replace(NO_FAULTS, **merged)
    for name in ("fail_first", "fail_every"):
        if getattr(faults, name) is not None and faults.status is None:
            raise DirectiveError(f"fault directive '{name}' needs 'status=CODE' as well")
    if faults.fail_first is not None and faults.fail_every is not None:
        raise DirectiveError("use one of 'fail_first' and 'fail_every', not both")
    return faults


def _parse(text: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in text.split(","):
        key, has_value, raw = (part.strip() for part in item.partition("="))
        if not key:
            continue  # tolerate empty items such as a trailing comma
        values[key] = _parse_value(key, raw if has_value else None)
    return values


def _parse_value(key: str, raw: str | None) -> Any:
    if key in _FLAGS:
        if raw is not None:
            raise DirectiveError(f"fault directive '{key}' takes no value")
        return True
    if raw is None or raw == "":
        if key in _INT_RANGES or key == "retry_after":
            raise DirectiveError(f"fault directive '{key}' needs a value ('{key}=...')")
        raise DirectiveError(f"unknown fault directive '{key}' (known: {', '.join(KNOWN)})")
    if key == "retry_after":
        return _parse_retry_after(raw)
    if key in _INT_RANGES:
        return _parse_int(key, raw)
    raise DirectiveError(f"unknown fault directive '{key}' (known: {', '.join(KNOWN)})")


def _parse_int(key: str, raw: str) -> int:
    low, high = _INT_RANGES[key]
    try:
        value = int(raw)
    except ValueError:
        raise DirectiveError(f"fault directive '{key}' needs an integer, got '{raw}'") from None
    if not low <= value <= high:
        raise DirectiveError(f"fault directive '{key}' must be between {low} and {high}")
    return value


def _parse_retry_after(raw: str) -> str:
    """Seconds, integer or decimal; kept as text since it goes straight into a header."""
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_DELAY_MS / 1000:
        raise DirectiveError(f"fault directive 'retry_after' needs seconds, got '{raw}'")
    return raw
