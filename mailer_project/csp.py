"""Content-Security-Policy on every page Django serves (django-csp: Django 5.2 has no built-in CSP).

The policy (settings.CONTENT_SECURITY_POLICY) allows scripts and styles from this site and inline
ones only with the request's nonce, so an injected <script> or <style> does not run.

Email HTML is styled inline and loads its images from anywhere. The admin never puts it in its own
pages (nor in a srcdoc iframe, which would inherit the page's policy): the campaign form and the
preview frame a URL of their own (campaigns.admin.preview), whose policy alone is relaxed for it,
sandboxed, with no script at all, and which only this site's pages may frame. The public web
version and archive pages (campaigns.views.web_version) are that HTML itself: inline styles and
https images are allowed there, scripts stay as strict as everywhere.
"""

import re

from csp.constants import NONE, SELF, UNSAFE_INLINE
from csp.middleware import CSPMiddleware

EMAIL_HTML_PAGES = re.compile(r"^(/w/[^/]+|/archive/\d+)/$")
EMAIL_HTML_DIRECTIVES = {"style-src": [SELF, UNSAFE_INLINE], "img-src": [SELF, "data:", "https:"]}
# The admin's preview frames (a campaign's, and the campaign form's live one): the email HTML alone.
EMAIL_PREVIEW_FRAMES = re.compile(r"^/admin/campaigns/campaign/(\d+/)?preview/frame/$")
EMAIL_PREVIEW_FRAME_DIRECTIVES = {
    "default-src": [NONE], "script-src": [NONE], "style-src": [UNSAFE_INLINE], "img-src": [SELF, "data:", "https:"],
    "font-src": [SELF, "data:", "https:"], "form-action": [NONE], "frame-ancestors": [SELF], "sandbox": True,
}
# The API's Swagger UI and Redoc pages (all their scripts from this site): both set inline styles from
# their scripts, and Redoc searches in a web worker made from a blob.
API_DOCS_PAGES = re.compile(r"^/api/(docs|redoc)/$")
API_DOCS_DIRECTIVES = {"style-src": [SELF, UNSAFE_INLINE], "img-src": [SELF, "data:"], "worker-src": [SELF, "blob:"]}


class MailerCSPMiddleware(CSPMiddleware):
    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only)
        if EMAIL_PREVIEW_FRAMES.match(request.path_info):
            parts.replace = {**(parts.replace or {}), **EMAIL_PREVIEW_FRAME_DIRECTIVES}
        elif EMAIL_HTML_PAGES.match(request.path_info):
            parts.replace = {**(parts.replace or {}), **EMAIL_HTML_DIRECTIVES}
        elif API_DOCS_PAGES.match(request.path_info):
            parts.replace = {**(parts.replace or {}), **API_DOCS_DIRECTIVES}
        return parts
