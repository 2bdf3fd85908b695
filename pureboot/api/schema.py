"""OpenAPI schema tweaks."""


def strip_trailing_slashes(endpoints, **kwargs):
    """Document paths as the product does (``/api/v1/nodes``); both forms are routed."""
    return [
        (path.rstrip("/") if path != "/" else path, path_regex, method, callback)
        for path, path_regex, method, callback in endpoints
    ]
