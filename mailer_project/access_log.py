"""Keep the tokens of unsubscribe and tracking links out of gunicorn's access log.

A token in /u/<token>/, /t/o/<token>/, /t/c/<token>/ or /w/<token>/ acts for its recipient (it
unsubscribes them, counts their opens and clicks, or shows their copy of the message), so a log line
shows "***" in its place: in the request line, the path and the Referer. nginx does the same for its own log (nginx/nginx.conf).

Used by docker/gunicorn.conf.py and the Procfile (`--logger-class`).
"""

import re

from gunicorn.glogging import Logger

from campaigns.security.logsafe import RewritingFilter

# A link path at the start of a value, after a space (the request line) or after scheme://host.
_LINK_TOKEN = re.compile(r"(^|\s|//[^/\s]*)(/(?:u|t/o|t/c|w)/)[^/?#\s]*")


def mask_link_tokens(text: str) -> str:
    return _LINK_TOKEN.sub(r"\1\2***", text)


class TokenMaskingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {key: mask_link_tokens(value) if isinstance(value, str) else value for key, value in atoms.items()}


class TokenMaskingFilter(RewritingFilter):
    """A logging filter for the app's own lines: Django logs "Not Found: /u/<token>/" for a bad link."""

    rewrite = staticmethod(mask_link_tokens)
