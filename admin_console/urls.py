"""Console routes (the console issue grows these into the full control plane)."""

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
]
