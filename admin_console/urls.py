"""Console routes: sign-in, the tenant list, and each tenant's pages."""

from django.contrib.auth import views as auth_views
from django.urls import path

from admin_console import views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="admin_console/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
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
]
