"""A/B tests: CampaignVariant, the campaign's test settings and winner, the variant of a test row
(DeliveryLog.variant, nullable and without a database constraint, like the log's other keys) and of
a batch (SendBatch.variant), and the batch status `held` (an A/B test's rest)."""

import datetime

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models

import campaigns.audience.validators


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0011_send_batches'),
    ]

    operations = [
        migrations.AddField(
            model_name='campaign',
            name='ab_metric',
            field=models.CharField(choices=[('opens', 'Opens by people (machine opens left out)'), ('clicks', 'Clicks')], default='opens', max_length=10, verbose_name='A/B winner metric'),
        ),
        migrations.AddField(
            model_name='campaign',
            name='ab_test_ends_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='campaign',
            name='ab_test_percent',
            field=models.PositiveSmallIntegerField(default=0, help_text='Share of the recipients that test the variants; 0 sends no A/B test.', validators=[django.core.validators.MinValueValidator(0), django.core.validators.MaxValueValidator(100)], verbose_name='A/B test share (%)'),
        ),
        migrations.AddField(
            model_name='campaign',
            name='ab_wait',
            field=models.DurationField(default=datetime.timedelta(seconds=14400), help_text='How long the test runs before the winner goes to the rest (HH:MM:SS).', verbose_name='A/B wait'),
        ),
        migrations.AlterField(
            model_name='sendbatch',
            name='status',
            field=models.CharField(choices=[('waiting', 'Waiting'), ('queued', 'Queued'), ('sending', 'Sending'), ('done', 'Done'), ('held', 'Held')], default='waiting', max_length=10),
        ),
        migrations.CreateModel(
            name='CampaignVariant',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('letter', models.CharField(choices=[('A', 'A'), ('B', 'B'), ('C', 'C'), ('D', 'D')], max_length=1)),
                ('subject', models.CharField(max_length=998)),
                ('from_name', models.CharField(blank=True, help_text="Empty: the campaign's From.", max_length=200, validators=[campaigns.audience.validators.refuse_line_breaks])),
                ('html_body', models.TextField(blank=True, help_text="Empty: the campaign's HTML.")),
                ('text_body', models.TextField(blank=True, help_text="Empty: the campaign's text (or the variant's HTML as text).")),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('campaign', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='variants', to='campaigns.campaign')),
            ],
            options={
                'ordering': ['campaign', 'letter'],
            },
        ),
        migrations.AddField(
            model_name='campaign',
            name='ab_winner',
            field=models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='campaigns.campaignvariant'),
        ),
        migrations.AddField(
            model_name='deliverylog',
            name='variant',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='campaigns.campaignvariant'),
        ),
        migrations.AddField(
            model_name='sendbatch',
            name='variant',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='campaigns.campaignvariant'),
        ),
        migrations.AddConstraint(
            model_name='campaignvariant',
            constraint=models.UniqueConstraint(fields=('campaign', 'letter'), name='campaignvariant_unique_letter'),
        ),
    ]
