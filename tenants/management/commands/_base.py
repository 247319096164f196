"""Shared plumbing for the bootstrap commands: turn service validation errors into CommandError."""

from collections.abc import Callable
from typing import TypeVar

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import CommandError

T = TypeVar("T")


def run_service(call: Callable[[], T]) -> T:
    try:
        return call()
    except ValidationError as exc:
        messages = (
            [f"{field}: {', '.join(errors)}" for field, errors in exc.message_dict.items()]
            if hasattr(exc, "error_dict")
            else exc.messages
        )
        raise CommandError("; ".join(messages)) from None
    except PermissionDenied as exc:
        raise CommandError(str(exc)) from None
