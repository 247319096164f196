"""Routing rules: the declarative condition language and, later, rule evaluation."""
