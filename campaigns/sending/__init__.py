"""Sending: the batch pipeline (pipeline.py), the provider chain (chain.py), the providers and the
shared rate limits (ratelimit.py)."""
