"""OpenAPI description of the agent-token authentication."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class AgentTokenScheme(OpenApiAuthenticationExtension):
    target_class = "agent.api.views.AgentTokenAuthentication"
    name = "agentToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Node <token>`: the token on the agent's kernel command line (a "
            "lifecycle job's agent token, or the install's token for an image deployment).",
        }
