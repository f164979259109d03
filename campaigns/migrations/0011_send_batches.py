"""Batches get a table of their own (SendBatch): the claim, the lease, the heartbeat and the "call
began" marks move there from the delivery rows, which are then written once after they are created,
with their result. The per-row claim columns go, and with them the two partial indexes they needed;
the unique (campaign, recipient) constraint becomes unique recipient (a recipient belongs to one
campaign), which also replaces the recipient foreign key's own index. The delivery log's two
foreign keys stop being database constraints: their per-row checks at commit were half of the
start's time (docs/design.md, promise 2).

Rows a batch held when this runs (workers are stopped for a deploy): those whose provider call had
begun become unknown (counted), the others pending; every campaign with pending rows gets a batch
row per batch number, waiting, which the queued tasks or the sweep pick up.
"""

import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models

MOVE_CLAIMS_TO_BATCHES = """
WITH lost AS (
    UPDATE campaigns_deliverylog SET status = 'unknown', updated_at = now(),
        last_error = 'claim ended by an upgrade after the provider call began; not re-sent automatically'
    WHERE status = 'sending' AND call_started_at IS NOT NULL
    RETURNING campaign_id
)
UPDATE campaigns_campaign AS c SET unknown_count = c.unknown_count + n.count
FROM (SELECT campaign_id, count(*) FROM lost GROUP BY campaign_id) AS n WHERE c.id = n.campaign_id;

UPDATE campaigns_deliverylog SET status = 'pending', attempts = greatest(attempts - 1, 0), updated_at = now()
WHERE status = 'sending';

INSERT INTO campaigns_sendbatch
    (campaign_id, number, status, first_id, last_id, size, attempts, in_flight, updated_at)
SELECT campaign_id, batch_number, 'waiting', min(id), max(id), count(*), 0, '{}', now()
FROM campaigns_deliverylog WHERE status = 'pending'
GROUP BY campaign_id, batch_number;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0010_sending_accounts'),
    ]

    operations = [
        migrations.CreateModel(
            name='SendBatch',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveIntegerField()),
                ('status', models.CharField(choices=[('waiting', 'Waiting'), ('queued', 'Queued'), ('sending', 'Sending'), ('done', 'Done')], default='waiting', max_length=10)),
                ('first_id', models.BigIntegerField()),
                ('last_id', models.BigIntegerField()),
                ('size', models.PositiveIntegerField(default=0, help_text='Rows in the batch when it was made.')),
                ('attempts', models.PositiveIntegerField(default=0, help_text='Claims so far.')),
                ('claim_token', models.UUIDField(blank=True, null=True)),
                ('lease_expires_at', models.DateTimeField(blank=True, null=True)),
                ('in_flight', django.contrib.postgres.fields.ArrayField(base_field=models.BigIntegerField(), blank=True, default=list, size=None)),
                ('call_started_at', models.DateTimeField(blank=True, help_text='When the current in-flight call began.', null=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.AddField(
            model_name='sendbatch',
            name='campaign',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='send_batches', to='campaigns.campaign'),
        ),
        migrations.RunSQL(MOVE_CLAIMS_TO_BATCHES, reverse_sql=migrations.RunSQL.noop),
        migrations.RemoveConstraint(
            model_name='deliverylog',
            name='deliverylog_unique_campaign_recipient',
        ),
        migrations.RemoveIndex(
            model_name='deliverylog',
            name='dlog_pending_idx',
        ),
        migrations.RemoveIndex(
            model_name='deliverylog',
            name='dlog_sending_idx',
        ),
        migrations.RemoveField(
            model_name='deliverylog',
            name='call_started_at',
        ),
        migrations.RemoveField(
            model_name='deliverylog',
            name='claim_token',
        ),
        migrations.RemoveField(
            model_name='deliverylog',
            name='lease_expires_at',
        ),
        migrations.AlterField(
            model_name='deliverylog',
            name='recipient',
            field=models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, related_name='delivery_log', to='campaigns.recipient'),
        ),
        migrations.AlterField(
            model_name='deliverylog',
            name='campaign',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='delivery_logs', to='campaigns.campaign'),
        ),
        migrations.AlterField(
            model_name='deliverylog',
            name='status',
            field=models.CharField(choices=[('pending', 'Pending'), ('sent', 'Sent'), ('failed', 'Failed'), ('skipped', 'Skipped'), ('unknown', 'Unknown')], default='pending', max_length=10),
        ),
        migrations.AddIndex(
            model_name='sendbatch',
            index=models.Index(condition=models.Q(('status', 'sending')), fields=['lease_expires_at'], name='sendbatch_sending_idx'),
        ),
        migrations.AddIndex(
            model_name='sendbatch',
            index=models.Index(condition=models.Q(('status', 'waiting')), fields=['campaign', 'number'], name='sendbatch_waiting_idx'),
        ),
        migrations.AddConstraint(
            model_name='sendbatch',
            constraint=models.UniqueConstraint(fields=('campaign', 'number'), name='sendbatch_unique_campaign_number'),
        ),
    ]
