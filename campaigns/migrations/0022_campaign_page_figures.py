import django.db.models.deletion
from django.db import migrations, models

# Campaigns started before this field: their rows skipped as suppressed (at the start, or since; the rows
# do not tell which), counted once.
BACKFILL = """
UPDATE campaigns_campaign c SET suppressed_at_start = s.n
FROM (SELECT campaign_id, count(*) AS n FROM campaigns_deliverylog
      WHERE status = 'skipped' AND last_error LIKE 'suppressed:%' GROUP BY campaign_id) s
WHERE s.campaign_id = c.id AND c.started_at IS NOT NULL
"""

# "Opened by people" counts a click as a person's open (campaigns.engagement.opens_and_clicks): the clicks
# recorded before without an open get one, at the click's time, and their campaigns' counters follow.
CLICKS_ARE_OPENS = """
WITH fixed AS (
    UPDATE campaigns_deliverylog SET opened_at = clicked_at
    WHERE opened_at IS NULL AND clicked_at IS NOT NULL
    RETURNING campaign_id
)
UPDATE campaigns_campaign c SET opened_count = c.opened_count + f.n
FROM (SELECT campaign_id, count(*) AS n FROM fixed GROUP BY campaign_id) f
WHERE f.campaign_id = c.id
"""


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0021_markdown_body'),
    ]

    operations = [
        migrations.AddField(
            model_name='campaign',
            name='suppressed_at_start',
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.CreateModel(
            name='EngagementMinute',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('minute', models.DateTimeField()),
                ('opens', models.PositiveIntegerField(default=0)),
                ('machine_opens', models.PositiveIntegerField(default=0)),
                ('clicks', models.PositiveIntegerField(default=0)),
                ('campaign', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                               related_name='+', to='campaigns.campaign')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('campaign', 'minute'),
                                                        name='engagementminute_unique_campaign_minute')],
            },
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.RunSQL(CLICKS_ARE_OPENS, migrations.RunSQL.noop),
    ]
