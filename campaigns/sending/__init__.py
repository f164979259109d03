"""Sending: start a campaign and send its batches (pipeline), queue their tasks (dispatch), each batch's
claim, lease and results (ledger), the provider chain with retries and fallback (chain), which sending
account of a pool sends a batch (routing), the shared rate limits and quotas (ratelimit), throttling
per receiving domain group (domain_groups, handed to providers with the batch), the sweep
that recovers what a crash left, "Test connection" (account_check), and the providers (providers/).

May import: the models, states, exceptions, campaigns.security, campaigns.deliverability (DKIM signing),
campaigns.message (rendering, links), campaigns.audience (segments, suppression) and
campaigns.experiments (A/B splits). Not engagement,
the admin, the views or the tasks. Within it: dispatch and providers/ import no other sending module
but ratelimit; domain_groups imports only ratelimit; routing and chain never import the pipeline.
"""
