"""Gateway routes: OpenAI and Anthropic wire formats under /v1/."""

from django.urls import path

from gateway.api import anthropic, catalog, openai

urlpatterns = [
    path("chat/completions", openai.chat_completions, name="gateway-chat"),
    path("embeddings", openai.embeddings, name="gateway-embeddings"),
    path("models", openai.models_list, name="gateway-models"),
    path("messages", anthropic.messages, name="gateway-messages"),
    path("feedback", catalog.feedback, name="gateway-feedback"),
]
