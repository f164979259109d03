"""Liveness facts that ops read: the scheduler's last heartbeat."""

import socket

from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_KEY = "scheduler:heartbeat"


def record_scheduler_heartbeat():
    beat = {"at": timezone.now().isoformat(), "host": socket.gethostname()}
    cache.set(HEARTBEAT_KEY, beat, timeout=None)
    return beat


def last_scheduler_heartbeat():
    return cache.get(HEARTBEAT_KEY)
