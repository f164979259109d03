from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("campaigns", "0002_webhook_event"),
    ]

    operations = [
        migrations.AddField(
            model_name="campaign",
            name="merge_fields",
            field=models.JSONField(blank=True, default=list, editable=False),
        ),
        migrations.AddField(
            model_name="campaign",
            name="merge_fields_total",
            field=models.IntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddIndex(
            model_name="deliverylog",
            index=models.Index(condition=models.Q(("sent_at__isnull", False)), fields=["campaign", "sent_at"],
                               name="dlog_campaign_sent_idx"),
        ),
    ]
