"""The SendGrid event ids already applied, so that a retried or replayed webhook counts once.

A plain table (no model): it is only ever touched by the set-based statements in
campaigns.engagement.sendgrid_webhook.
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("campaigns", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(
            sql=[
                "CREATE TABLE campaigns_webhook_event ("
                " event_id text PRIMARY KEY,"
                " received_at timestamptz NOT NULL DEFAULT now())",
                "CREATE INDEX campaigns_webhook_event_received_idx ON campaigns_webhook_event (received_at)",
            ],
            reverse_sql=["DROP TABLE campaigns_webhook_event"],
        ),
    ]
