"""Cross-app REST plumbing: one error shape, bounded pagination."""
