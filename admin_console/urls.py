"""Console routes: sign-in, the tenant list, and each tenant's pages."""

from django.contrib.auth import views as auth_views
from django.urls import path

from admin_console import views, views_keys, views_models, views_routing
from admin_console.auth import ThrottledLoginView

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("t/<slug:tenant>/", views.dashboard, name="dashboard"),
    path("t/<slug:tenant>/budgets/", views.budgets, name="budgets"),
    path("t/<slug:tenant>/experiments/", views.experiments, name="experiments"),
    path("t/<slug:tenant>/experiments/<int:pk>/", views.experiment_detail, name="experiment"),
    path(
        "t/<slug:tenant>/experiments/<int:pk>/<str:verb>/",
        views.experiment_action,
        name="experiment-action",
    ),
    path("t/<slug:tenant>/usage/", views.usage, name="usage"),
    path("t/<slug:tenant>/audit/", views.audit, name="audit"),
    path("t/<slug:tenant>/keys/", views_keys.keys, name="keys"),
    path("t/<slug:tenant>/keys/<int:pk>/rotate/", views_keys.key_rotate, name="key-rotate"),
    path("t/<slug:tenant>/keys/<int:pk>/revoke/", views_keys.key_revoke, name="key-revoke"),
    path("t/<slug:tenant>/models/", views_models.models, name="models"),
    path("t/<slug:tenant>/models/<int:pk>/", views_models.model_edit, name="model-edit"),
    path(
        "t/<slug:tenant>/models/<int:pk>/enabled/", views_models.model_toggle, name="model-toggle"
    ),
    path("t/<slug:tenant>/routing/", views_routing.routing, name="routing"),
    path("t/<slug:tenant>/routing/explain/", views_routing.routing_explain, name="routing-explain"),
]
