"""The console's deployment form: input shapes here; the service's rules (URL policy, prices,
secret ownership, limits) come back as ValidationErrors mapped onto these same field names."""

from typing import Any

from django import forms

from gateway.models import Capability, ModelDeployment, Provider, default_capabilities
from keyvault.models import SecretReference
from tenants.models import Tenant


def _price(label: str, help_text: str = "") -> forms.DecimalField:
    """USD per 1M tokens; empty leaves the price to litellm's price list."""
    return forms.DecimalField(
        max_digits=20, decimal_places=10, required=False, label=label, help_text=help_text
    )


def _names(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


class DeploymentForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="The public model name callers use.")
    provider = forms.ChoiceField(choices=Provider.choices)
    litellm_model = forms.CharField(
        max_length=300, label="litellm model", help_text="e.g. openai/gpt-4o-mini"
    )
    # A plain text field: the service decides what an acceptable upstream is (and says why).
    api_base = forms.CharField(max_length=500, required=False, label="API base URL")
    api_version = forms.CharField(
        max_length=50, required=False, label="API version", help_text="Azure only."
    )
    secret_reference = forms.ModelChoiceField(
        queryset=SecretReference.objects.none(), required=False, empty_label="(none)",
        help_text="The provider key, from one of this tenant's vault references.",
    )  # fmt: skip
    input_price_per_mtok = _price(
        "Input price (USD / 1M tokens)", help_text="Empty: litellm's price list."
    )
    output_price_per_mtok = _price("Output price (USD / 1M tokens)")
    cached_input_price_per_mtok = _price("Cached input price (USD / 1M tokens)")
    context_window = forms.IntegerField(initial=128_000)
    max_output_tokens = forms.IntegerField(initial=4096)
    capabilities = forms.MultipleChoiceField(
        choices=Capability.choices, required=False, widget=forms.CheckboxSelectMultiple,
        initial=default_capabilities,
    )  # fmt: skip
    priority = forms.IntegerField(initial=100, help_text="Lower is tried first.")
    weight = forms.IntegerField(initial=1)
    timeout_s = forms.FloatField(initial=60.0, label="Timeout (s)")
    fallbacks = forms.CharField(
        required=False, help_text="Model names tried in order when this one fails, comma-separated."
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["secret_reference"].queryset = SecretReference.objects.filter(  # type: ignore[attr-defined]
            tenant=tenant
        ).order_by("name")

    def clean_fallbacks(self) -> list[str]:
        return _names(self.cleaned_data["fallbacks"])

    def deployment_fields(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["api_base"] = data["api_base"].strip()
        return data


def deployment_initial(deployment: ModelDeployment) -> dict[str, Any]:
    """The edit form's starting values: the deployment as it is now."""
    names = [name for name in DeploymentForm.base_fields if name != "fallbacks"]
    initial = {name: getattr(deployment, name) for name in names}
    initial["fallbacks"] = ", ".join(deployment.fallbacks)
    return initial
