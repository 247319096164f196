"""fakellm: a fast, deterministic fake LLM upstream for tests, the demo and load benchmarks.

It is a real HTTP server speaking the OpenAI (``/v1/chat/completions``, ``/v1/embeddings``,
``/v1/models``), Azure OpenAI (``/openai/deployments/{name}/...``) and Anthropic
(``/v1/messages``) wire formats, with replies that are a fixed function of the request and fault
modes chosen per request (see ``switchboard.fakellm.faults``).

Run it with ``python -m switchboard.fakellm --port 18080``; in tests use
``switchboard.fakellm.testing.FakeLLM``.
"""

from switchboard.fakellm.faults import DirectiveError, Faults
from switchboard.fakellm.server import RunningServer, create_app, start_server
from switchboard.fakellm.testing import FakeLLM

__all__ = [
    "DirectiveError",
    "FakeLLM",
    "Faults",
    "RunningServer",
    "create_app",
    "start_server",
]
