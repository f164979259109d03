"""`Authorization: Bearer <token>` for the API (the admin's session works too, with CSRF: DRF's
SessionAuthentication)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from campaigns.api import tokens


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send the token as 'Authorization: Bearer <token>'.")
        try:
            token = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("The token is not valid.")
        found = tokens.user_for(token)
        if found is None:
            raise exceptions.AuthenticationFailed("The token is not valid, has expired or was revoked.")
        user, row = found
        if not user.is_active:
            raise exceptions.AuthenticationFailed("This token's user is inactive.")
        return user, row

    def authenticate_header(self, request):
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A personal API token (docs/api.md)."}
