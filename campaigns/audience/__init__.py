"""Who gets a campaign: recipients imported from CSV or Excel (importing/), segments that narrow a
campaign's audience, the suppression list, follow-ups to a group of an earlier campaign's
recipients, the one email address check (validators), and formula-safe CSV for what staff export.

May import: the models, exceptions, campaigns.security and campaigns.message.rendering. Not sending,
engagement or experiments: they read the audience, never the other way round. `validators` imports
nothing of the app, because the models use it.
"""
