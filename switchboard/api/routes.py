"""URL pieces shared by every app's management API router."""

# Tenant-owned resources live under /api/v1/tenants/{tenant}/… (the slug is checked by the
# tenant-scoped base viewset, which answers 404 for anything malformed or not the caller's).
TENANT = r"tenants/(?P<tenant>[^/]+)"
