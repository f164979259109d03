"""Content-Security-Policy on every page Django serves (django-csp: Django 5.2 has no built-in CSP).

The policy (settings.CONTENT_SECURITY_POLICY) allows scripts and styles from this site and inline
ones only with the request's nonce, so an injected <script> or <style> does not run.

One exception: the campaign form and the preview show the campaign's email HTML in a sandboxed
srcdoc iframe, and such an iframe inherits its page's policy; the public web version and archive
pages (campaigns.views.web_version) are that HTML itself. Email HTML is styled inline and loads
its images from anywhere, so on those pages inline styles and https images are allowed. Scripts
stay as strict as everywhere (and the sandbox runs none at all).
"""

import re

from csp.constants import SELF, UNSAFE_INLINE
from csp.middleware import CSPMiddleware

EMAIL_HTML_PAGES = re.compile(r"^(/admin/campaigns/campaign/(add|\d+/change|\d+/preview)|/w/[^/]+|/archive/\d+)/$")
EMAIL_HTML_DIRECTIVES = {"style-src": [SELF, UNSAFE_INLINE], "img-src": [SELF, "data:", "https:"]}
# The API's Swagger UI and Redoc pages (all their scripts from this site): both set inline styles from
# their scripts, and Redoc searches in a web worker made from a blob.
API_DOCS_PAGES = re.compile(r"^/api/(docs|redoc)/$")
API_DOCS_DIRECTIVES = {"style-src": [SELF, UNSAFE_INLINE], "img-src": [SELF, "data:"], "worker-src": [SELF, "blob:"]}


class MailerCSPMiddleware(CSPMiddleware):
    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only)
        if EMAIL_HTML_PAGES.match(request.path_info):
            parts.replace = {**(parts.replace or {}), **EMAIL_HTML_DIRECTIVES}
        elif API_DOCS_PAGES.match(request.path_info):
            parts.replace = {**(parts.replace or {}), **API_DOCS_DIRECTIVES}
        return parts
