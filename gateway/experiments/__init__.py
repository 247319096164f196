"""A/B experiments: sticky variant assignment and the statistics that judge variants."""
