"""gunicorn's logger with secrets redacted (see :mod:`pureboot.logredact`).

``deploy/gunicorn.conf.py`` names it (``logger_class``), so an access log,
when one is turned on, never holds a node token or a password, whatever its
``access_log_format`` names; its error log passes the same filter.
"""

from __future__ import annotations

from gunicorn.glogging import Logger

from .logredact import REDACTED, RedactSecrets, redact

# Atoms whose whole value is a credential.
_SECRET_ATOMS = frozenset(
    {"{authorization}i", "{cookie}i", "{set-cookie}o", "{http_authorization}e", "{http_cookie}e"}
)


class RedactingLogger(Logger):
    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.addFilter(RedactSecrets())

    def atoms(self, resp, req, environ, request_time):
        # Every atom, not only the request line: a format may name any header
        # (``%({authorization}i)s``, ``%({referer}i)s``).
        atoms = super().atoms(resp, req, environ, request_time)
        return {
            k: REDACTED if k in _SECRET_ATOMS else redact(v) if isinstance(v, str) else v
            for k, v in atoms.items()
        }
