"""Vault connections and secret references (the keyvault issue fills this app)."""
