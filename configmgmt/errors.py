"""Failures of configuration-management calls, with a message fit for operators."""


class ConfigMgmtError(Exception):
    """A tool or server refused or failed; the message names what and why (no secrets)."""
