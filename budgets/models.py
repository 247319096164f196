"""Budgets and alerts (the budgets issue fills this app)."""
