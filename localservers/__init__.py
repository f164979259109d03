"""Local stand-ins for the mail providers (an SMTP capture sink, a fake SendGrid v3 API) and the process
helpers that `make run`, tests and benchmarks share: ports.py (free ports, waiting for a listener),
serving.py (a server for the length of a block), workers.py (a real Celery worker process).

Development and test tooling only: production code (campaigns/, mailer_project/) never imports it
(tests/localservers/test_not_in_production.py checks).
"""
