"""Public endpoints, one module each: unsubscribe links, the open pixel and click redirect (tracking),
the SendGrid Event Webhook and the health probes.

Each view is thin: it checks the signed token (or the webhook signature) and calls one plain function.
A forged or unknown token gets a 404 page and changes nothing.
"""

from django.shortcuts import render


def not_found(request):
    return render(request, "campaigns/public/not_found.html", status=404)
