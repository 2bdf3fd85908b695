from rest_framework.routers import SimpleRouter


class OptionalSlashRouter(SimpleRouter):
    """Routes ``/api/v1/nodes`` and ``/api/v1/nodes/`` alike (the documented paths have none)."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"
