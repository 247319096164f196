"""Model deployments, task profiles, routing rules and experiments (the gateway issue)."""
