"""gunicorn's logger with the request line redacted (see :mod:`pureboot.logredact`).

``deploy/gunicorn.conf.py`` names it (``logger_class``), so an access log,
when one is turned on, never holds a node token or a password.
"""

from __future__ import annotations

from gunicorn.glogging import Logger

from .logredact import RedactSecrets, redact

_REQUEST_ATOMS = ("r", "U", "q", "f")


class RedactingLogger(Logger):
    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.addFilter(RedactSecrets())

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in _REQUEST_ATOMS:
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms
