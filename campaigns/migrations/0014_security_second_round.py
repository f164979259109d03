"""Issue 22: a sending account's connection check runs on a worker and keeps its result on the account;
content is capped at 512 KB where it is entered."""

from django.db import migrations, models

import campaigns.message.rendering


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
        migrations.AlterField(
            model_name='campaign',
            name='html_body',
            field=models.TextField(validators=[campaigns.message.rendering.refuse_oversized_content]),
        ),
        migrations.AlterField(
            model_name='campaign',
            name='text_body',
            field=models.TextField(blank=True, help_text='Generated from the HTML when empty.', validators=[campaigns.message.rendering.refuse_oversized_content]),
        ),
        migrations.AlterField(
            model_name='campaignvariant',
            name='html_body',
            field=models.TextField(blank=True, help_text="Empty: the campaign's HTML.", validators=[campaigns.message.rendering.refuse_oversized_content]),
        ),
        migrations.AlterField(
            model_name='campaignvariant',
            name='text_body',
            field=models.TextField(blank=True, help_text="Empty: the campaign's text (or the variant's HTML as text).", validators=[campaigns.message.rendering.refuse_oversized_content]),
        ),
        migrations.AlterField(
            model_name='emailtemplate',
            name='html_body',
            field=models.TextField(validators=[campaigns.message.rendering.refuse_oversized_content]),
        ),
        migrations.AlterField(
            model_name='emailtemplate',
            name='text_body',
            field=models.TextField(blank=True, help_text='Generated from the HTML when empty.', validators=[campaigns.message.rendering.refuse_oversized_content]),
        ),
    ]
