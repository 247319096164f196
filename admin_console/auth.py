"""Console sign-in with throttling: after repeated failures for one username (from any
address) or from one address (for any username), sign-in is refused for a while.

Counters live in Redis (shared by every web process) with a fixed window; a success clears
the username's counter. If Redis cannot be reached, sign-in still works (Django's password
hashing already slows guessing) and the failure is logged.
"""

import hashlib
import logging
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView

from switchboard.redis_client import redis_sync

logger = logging.getLogger(__name__)

MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
WINDOW_S = 15 * 60
LOCKED = "Too many failed sign-ins. Try again in 15 minutes."


def _key(kind: str, value: str) -> str:
    digest = hashlib.blake2b(value.lower().encode(), digest_size=12).hexdigest()
    return f"sb:{{login}}:{kind}:{digest}"


class ThrottledAuthenticationForm(AuthenticationForm):
    def clean(self) -> dict[str, Any]:
        username = str(self.data.get("username", ""))[:150]
        address = str(self.request.META.get("REMOTE_ADDR", "")) if self.request else ""
        keys = [(_key("user", username), MAX_FAILURES_PER_USER),
                (_key("addr", address), MAX_FAILURES_PER_ADDRESS)]  # fmt: skip
        try:
            client = redis_sync()
            counts = client.mget([key for key, _ in keys])
        except Exception as exc:  # Redis down: no throttle, but say so
            logger.warning("login throttle unavailable: %s", type(exc).__name__)
            return super().clean()
        if any(int(count or 0) >= limit for count, (_, limit) in zip(counts, keys, strict=True)):
            raise forms.ValidationError(LOCKED, code="throttled")
        try:
            return super().clean()
        except forms.ValidationError:
            pipe = client.pipeline(transaction=False)
            for key, _ in keys:
                pipe.incr(key)
                pipe.expire(key, WINDOW_S, nx=True)
            pipe.execute()
            raise
        finally:
            if self.user_cache is not None:
                client.delete(keys[0][0])


class ThrottledLoginView(LoginView):
    form_class = ThrottledAuthenticationForm
    template_name = "admin_console/login.html"
    redirect_authenticated_user = True
