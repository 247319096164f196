"""Gateway routes (OpenAI wire format under /v1/)."""

from django.urls import path

from gateway.api import openai

urlpatterns = [
    path("models", openai.models_list, name="gateway-models"),
]
