"""What the product tells staff by email: the completion report when a campaign ends
(completion_report.py), sent through the environment's providers like a test email (mail.py, which
also tells staff of a webhook endpoint that was disabled).

May import: models, stats, message.rendering and sending (the provider chain). Nothing of the app imports
it but the tasks and webhooks.dispatch.
"""
