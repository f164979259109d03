"""Imports and preflights share their background-run fields (campaigns.models.BackgroundRun): one
progress help text, one set of status labels (a preflight still reads "Finished" in the admin)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0012_ab_tests'),
    ]

    operations = [
        migrations.AlterField(
            model_name='preflightrun',
            name='rows_done',
            field=models.PositiveIntegerField(default=0, help_text='Progress: rows done so far.'),
        ),
        migrations.AlterField(
            model_name='preflightrun',
            name='status',
            field=models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='queued', max_length=10),
        ),
        migrations.AlterField(
            model_name='recipientimport',
            name='rows_done',
            field=models.PositiveIntegerField(default=0, help_text='Progress: rows done so far.'),
        ),
    ]
