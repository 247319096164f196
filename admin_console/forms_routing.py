"""Console forms of the Routing page: a routing rule (its condition is validated by the
service, whose message names the offending path) and the explain panel's sample request."""

import json
from typing import Any

from django import forms
from django.db.models import Q

from gateway.models import STRATEGY_CHOICES, TaskProfile
from tenants.models import USER_TIER_CHOICES, Tenant

ACTION_CHOICES = [("models", "Send to models"), ("task_profile", "Use a task profile")]
MAX_PROMPT_CHARS = 2_000_000


def _json(raw: str, *, what: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, "
                                    f"column {exc.colno}).") from None  # fmt: skip


class RoutingRuleForm(forms.Form):
    name = forms.CharField(max_length=100)
    priority = forms.IntegerField(initial=100, help_text="Lower is evaluated first.")
    condition = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
        help_text='JSON, e.g. {"field": "prompt_tokens", "op": "gt", "value": 32000}; '
        "combine with all / any / not.",
    )
    # Named like the rule's `action` so that the service's action errors land here.
    action = forms.ChoiceField(choices=ACTION_CHOICES, initial="models", widget=forms.RadioSelect)
    models = forms.CharField(required=False, help_text="Model names in order, comma-separated.")
    strategy = forms.ChoiceField(choices=STRATEGY_CHOICES, initial="priority")
    task_profile = forms.ChoiceField(choices=[], required=False)
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = (
            TaskProfile.objects.filter(Q(tenant=tenant) | Q(tenant__isnull=True))
            .order_by("name")
            .values_list("name", flat=True)
            .distinct()
        )
        self.fields["task_profile"].choices = [("", "(choose)"), *((n, n) for n in names)]  # type: ignore[attr-defined]

    def clean_condition(self) -> Any:
        return _json(self.cleaned_data["condition"], what="The condition")

    def clean_models(self) -> list[str]:
        return [part.strip() for part in self.cleaned_data["models"].split(",") if part.strip()]

    def clean(self) -> dict[str, Any] | None:
        data = super().clean() or {}
        if data.get("action") == "models" and not data.get("models"):
            self.add_error("models", "Name at least one model.")
        if data.get("action") == "task_profile" and not data.get("task_profile"):
            self.add_error("task_profile", "Choose a task profile.")
        return data

    def rule_fields(self) -> dict[str, Any]:
        data = self.cleaned_data
        if data["action"] == "task_profile":
            action: dict[str, Any] = {"task_profile": data["task_profile"]}
        else:
            action = {"models": data["models"], "strategy": data["strategy"]}
        return {
            "name": data["name"],
            "priority": data["priority"],
            "condition": data["condition"],
            "action": action,
            "enabled": data["enabled"],
        }


class ExplainForm(forms.Form):
    model = forms.CharField(max_length=200, help_text="The model (or task profile) requested.")
    task_type = forms.CharField(max_length=100, required=False)
    user_tier = forms.ChoiceField(choices=[("", "(the key's / tenant's)"), *USER_TIER_CHOICES],
                                  required=False)  # fmt: skip
    prompt = forms.CharField(
        max_length=MAX_PROMPT_CHARS, strip=False,
        widget=forms.Textarea(attrs={"rows": 4}), help_text="Its length sets prompt_tokens.",
    )  # fmt: skip
    max_tokens = forms.IntegerField(required=False, min_value=1)
    metadata = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
        help_text='JSON object, e.g. {"user_id": "u-1", "team": "search"}.',
    )  # fmt: skip

    def clean_metadata(self) -> dict[str, Any]:
        raw = self.cleaned_data["metadata"].strip()
        if not raw:
            return {}
        value = _json(raw, what="Metadata")
        if not isinstance(value, dict):
            raise forms.ValidationError("Metadata must be a JSON object.")
        return value

    def chat_body(self) -> dict[str, Any]:
        """The sample request in the OpenAI shape the gateway guards, with the native
        endpoint's context fields carried in `metadata` as it does."""
        data = self.cleaned_data
        metadata = dict(data["metadata"])
        for name in ("task_type", "user_tier"):
            if data[name]:
                metadata[name] = data[name]
        body: dict[str, Any] = {
            "model": data["model"],
            "messages": [{"role": "user", "content": data["prompt"]}],
            "metadata": metadata,
        }
        if data["max_tokens"] is not None:
            body["max_tokens"] = data["max_tokens"]
        return body
