"""One module per vault behind the small interface in `base.py`."""
