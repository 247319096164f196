"""Switchboard: an enterprise, multi-tenant LLM gateway and control plane."""

import os

# litellm fetches its model cost map from the internet at import time unless told to use the
# copy it ships; Switchboard never loads data from the internet at run time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Load the Celery app with Django so that @shared_task binds to it.
from switchboard.celery import app as celery_app

__all__ = ["celery_app"]
