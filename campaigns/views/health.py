"""Probes for load balancers and orchestrators.

/healthz says the web process is alive (no dependency is touched, so a database outage does not get
every web container restarted); /readyz says it can serve: database, migrations, Redis and broker,
each "ok" or "failed" (the reasons are logged). Nginx serves /readyz to private networks only.
"""

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from campaigns.operations import health


@never_cache
@require_safe
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request):
    ready, checks = health.public_readiness()
    return JsonResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status=200 if ready else 503)
