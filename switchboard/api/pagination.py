"""Limit/offset pagination with a hard maximum page size."""

from django.conf import settings
from rest_framework.pagination import LimitOffsetPagination


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """`?limit=&offset=`; a limit above the platform maximum is clamped, not an error."""

    default_limit = 50
    max_limit = settings.API_MAX_PAGE_SIZE
