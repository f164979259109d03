"""What a campaign sends: merge tags and rendering (rendering), a Markdown body made into HTML
(markdown), tracked links on the SMTP path (click_tracking), the signed links carried in every email
(signed_links), the starter templates, and preflight, which renders every recipient's message before
anything is sent.

May import: the models, exceptions, campaigns.security; preflight also reads the audience's segments,
the sending limits and providers it estimates from (campaigns.sending), an A/B test's variants
(campaigns.experiments) and the DNS checks of campaigns.deliverability. `rendering` imports only the
exceptions, and `markdown` nothing of the app, because the models use them.
"""
