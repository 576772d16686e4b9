"""Baseline site: django-eventstream 5 (DjangoModelStorage on PostgreSQL, Redis between processes).

Serve with ``daphne bench.eventstream_site.asgi:application`` and
DJANGO_SETTINGS_MODULE=bench.eventstream_site.settings, DATABASE_URL and REDIS_URL set.
"""
