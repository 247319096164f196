"""Console forms: field validation here, business rules in the services (errors mapped back
onto the fields)."""

from typing import Any

from django import forms
from django.db.models import Q

from budgets.models import Budget, BudgetPeriod, BudgetScope
from gateway.models import ModelDeployment
from tenants.models import ApiKey, Team, Tenant


class BudgetForm(forms.Form):
    name = forms.CharField(max_length=100)
    scope = forms.ChoiceField(choices=BudgetScope.choices)
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False)
    api_key = forms.ModelChoiceField(queryset=ApiKey.objects.none(), required=False)
    end_user = forms.CharField(max_length=256, required=False)
    deployment = forms.ModelChoiceField(queryset=ModelDeployment.objects.none(), required=False)
    amount_usd = forms.DecimalField(max_digits=20, decimal_places=10, min_value=0)
    period = forms.ChoiceField(choices=BudgetPeriod.choices, initial=BudgetPeriod.MONTHLY)
    thresholds = forms.CharField(initial="50, 80, 95, 100", help_text="Percent, comma-separated.")
    hard = forms.BooleanField(required=False, initial=True, label="Block calls at 100 %")
    notify_emails = forms.CharField(required=False, help_text="Comma-separated addresses.")

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = Team.objects.filter(tenant=tenant)  # type: ignore[attr-defined]
        self.fields["api_key"].queryset = ApiKey.objects.filter(tenant=tenant)  # type: ignore[attr-defined]
        self.fields["deployment"].queryset = ModelDeployment.objects.filter(  # type: ignore[attr-defined]
            Q(tenant=tenant) | Q(tenant__isnull=True)
        )

    def clean_thresholds(self) -> list[int]:
        raw = [part.strip() for part in self.cleaned_data["thresholds"].split(",") if part.strip()]
        if not raw or not all(part.isdigit() for part in raw):
            raise forms.ValidationError("Give whole percents separated by commas, e.g. 50, 80.")
        return [int(part) for part in raw]

    def clean_notify_emails(self) -> list[str]:
        return [
            part.strip() for part in self.cleaned_data["notify_emails"].split(",") if part.strip()
        ]

    def budget_fields(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["end_user"] = data.get("end_user") or ""
        return data


def budget_initial(budget: Budget) -> dict[str, Any]:
    return {"name": budget.name}
