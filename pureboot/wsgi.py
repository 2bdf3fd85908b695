"""WSGI entry point (gunicorn pureboot.wsgi; also what runserver serves).

``BootFastPath`` answers the ``/boot/ipxe`` polls that change nothing before
Django's middleware runs (see bootserve/fastpath.py); everything else is
Django's.
"""

import gc
import os

from django.core.wsgi import get_wsgi_application

from pureboot.wsgi_guard import CharsetGuard

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pureboot.settings")
django_application = get_wsgi_application()

from bootserve.fastpath import BootFastPath  # noqa: E402 - needs the apps loaded

application = CharsetGuard(BootFastPath(django_application))

# Everything loaded so far lives as long as the process: keep the garbage
# collector from walking it again on every full collection.
gc.freeze()
