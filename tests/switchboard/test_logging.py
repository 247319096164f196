"""JSON log lines: parseable, scrubbed of credentials, tracebacks included."""

import json
import logging

from switchboard.logging import JsonFormatter, RedactSecretsFilter


def _render(
    logger_name: str, message: str, *args: object, exc: BaseException | None = None
) -> dict:
    record = logging.LogRecord(logger_name, logging.ERROR, __file__, 1, message, args,
                               (type(exc), exc, exc.__traceback__) if exc else None)  # fmt: skip
    RedactSecretsFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_json_lines_are_scrubbed() -> None:
    line = _render("gateway", "key %s failed", "sbk_abcdefghijkl_SECRETSECRETSECRET")
    assert line["level"] == "ERROR"
    assert line["logger"] == "gateway"
    assert line["message"] == "key [REDACTED] failed"
    assert line["ts"].endswith("+00:00")


def test_tracebacks_are_scrubbed_too() -> None:
    try:
        raise ValueError("Authorization: Bearer sk-live-1234567890abcdef")
    except ValueError as exc:
        line = _render("x", "boom", exc=exc)
    assert "ValueError" in line["exception"]
    assert "sk-live" not in json.dumps(line)
