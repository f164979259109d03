"""Issue 22: a sending account's connection check runs on a worker and keeps its result on the account;
content is capped at 512 KB where it is entered; the staff groups of an existing install get the A/B
variant permissions their campaign rights imply (as `create_staff_groups` now gives them)."""

from django.db import migrations, models

import campaigns.message.rendering


VARIANT_PERMISSIONS = {
    "Viewer": ["view_campaignvariant"],
    "Campaign editor": ["view_campaignvariant", "add_campaignvariant", "change_campaignvariant",
                        "delete_campaignvariant"],
    "Campaign sender": ["view_campaignvariant", "add_campaignvariant", "change_campaignvariant",
                        "delete_campaignvariant"],
}


def grant_variant_permissions(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    groups = list(Group.objects.filter(name__in=VARIANT_PERMISSIONS))
    if not groups:
        return  # a fresh install: create_staff_groups makes the groups with these rights
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    # Django makes permissions after migrate; on an install where 0012 ran they exist already.
    content_type, _ = ContentType.objects.get_or_create(app_label="campaigns", model="campaignvariant")
    for action in ("view", "add", "change", "delete"):
        Permission.objects.get_or_create(content_type=content_type, codename=f"{action}_campaignvariant",
                                         defaults={"name": f"Can {action} campaign variant"})
    for group in groups:
        group.permissions.add(*Permission.objects.filter(content_type=content_type,
                                                         codename__in=VARIANT_PERMISSIONS[group.name]))


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0015_early_evidence_and_held_refusals'),
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
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
        migrations.RunPython(grant_variant_permissions, migrations.RunPython.noop),
    ]
