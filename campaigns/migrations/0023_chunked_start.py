"""The chunked start (issue 26): the campaign's start cursor, and an index to read a campaign's
recipients in id order, one chunk at a time. The index is built concurrently, so that an upgrade does
not block imports into a large recipients table while it builds."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('campaigns', '0022_campaign_page_figures'),
    ]

    operations = [
        migrations.AddField(
            model_name='campaign',
            name='start_cursor',
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
        AddIndexConcurrently(
            model_name='recipient',
            index=models.Index(fields=['campaign', 'id'], name='recipient_campaign_id'),
        ),
    ]
