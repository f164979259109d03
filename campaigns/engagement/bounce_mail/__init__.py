"""Bounces that come back by mail, for the SMTP and SES-SMTP sending accounts: delivery status
notifications, complaint (ARF) reports and auto-replies read from a mailbox or given to
`process_bounce_mail` (docs/deliverability.md).

- reading.py: what one message says (per recipient: a hard or soft bounce, a complaint, or nothing),
  from RFC 3464 DSNs, RFC 5965 ARF reports, RFC 3834 auto-replies and, through flufl.bounce (GNU
  Mailman's detectors), the common non-standard formats; classified by RFC 3463 status and text.
- matching.py: which delivery each recipient's bounce is about (VERP token, our signed header, the
  Message-ID, else the address's latest sent delivery within BOUNCE_MATCH_WINDOW_DAYS).
- processing.py: readings made into ProviderEvents, applied by campaigns.engagement.provider_events;
  what cannot be read is kept as an UnreadBounce.
- mailbox.py: the IMAP and POP3 pollers beat runs every minute on the `bounces` queue.

May import: the models, exceptions, campaigns.engagement.provider_events, campaigns.audience and
campaigns.message.signed_links (the bounce token).
"""
