"""Console forms for API keys: field validation here, business rules in the tenants services
(their errors are mapped back onto these fields)."""

from datetime import timedelta
from typing import Any

from django import forms

from tenants.models import USER_TIER_CHOICES, Team, Tenant
from tenants.services import MAX_ROTATION_GRACE

MAX_ALLOWED_MODELS = 500
MODEL_NAME_MAX = 200


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=200)
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False)
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires at (UTC)",
        help_text="Empty: never expires.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    allowed_models = forms.CharField(
        required=False, help_text="Model names, comma-separated. Empty: every model."
    )
    rpm_limit = forms.IntegerField(
        required=False, min_value=1, max_value=10_000_000, label="Requests per minute"
    )
    tpm_limit = forms.IntegerField(
        required=False, min_value=1, max_value=2_000_000_000, label="Tokens per minute"
    )
    max_concurrency = forms.IntegerField(
        required=False, min_value=1, max_value=100_000, label="Max concurrent calls"
    )
    max_user_tier = forms.ChoiceField(
        choices=[("", "Any"), *USER_TIER_CHOICES], required=False, label="Highest end-user tier"
    )

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Team.objects.filter(tenant=tenant)  # type: ignore[attr-defined]

    def clean_allowed_models(self) -> list[str]:
        names = [n.strip() for n in self.cleaned_data["allowed_models"].split(",") if n.strip()]
        if len(names) > MAX_ALLOWED_MODELS:
            raise forms.ValidationError(f"Give at most {MAX_ALLOWED_MODELS} model names.")
        if any(len(name) > MODEL_NAME_MAX for name in names):
            raise forms.ValidationError(f"A model name has at most {MODEL_NAME_MAX} characters.")
        return list(dict.fromkeys(names))

    def key_fields(self) -> dict[str, Any]:
        """The keyword arguments of `api_key_create`."""
        return dict(self.cleaned_data)


class ApiKeyRotateForm(forms.Form):
    grace_seconds = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=int(MAX_ROTATION_GRACE.total_seconds()),
        help_text="How long the old key keeps working (0 to 7 days).",
    )

    def grace(self) -> timedelta:
        return timedelta(seconds=self.cleaned_data.get("grace_seconds") or 0)
