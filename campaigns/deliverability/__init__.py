"""Deliverability: DKIM keys and signing (dkim), and the DNS checks of a sending account's and a
campaign's domains: SPF, DKIM, DMARC alignment, MX, and the bulk-sender checklist (dns_checks).

A leaf under sending, the admin and preflight, which all use it. May import: the models, the
exceptions, campaigns.security and campaigns.stats (the complaint rate); nothing else of the app.
"""
