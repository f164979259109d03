"""Issue 22: a sending account's connection check runs on a worker and keeps its result on the account."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0013_background_runs'),
    ]

    operations = [
        migrations.AddField(
            model_name='sendingaccount',
            name='check_requested_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='sendingaccount',
            name='last_check_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='sendingaccount',
            name='last_check_worked',
            field=models.BooleanField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name='sendingaccount',
            name='last_check_message',
            field=models.TextField(blank=True, editable=False),
        ),
    ]
