"""WSGI entry point (gunicorn pureboot.wsgi; also what runserver serves)."""

import os

from django.core.wsgi import get_wsgi_application

from pureboot.wsgi_guard import CharsetGuard

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pureboot.settings")
application = CharsetGuard(get_wsgi_application())
