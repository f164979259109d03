from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_models_and_migrations_agree():
    out = StringIO()
    # --check exits non-zero (SystemExit) when a model change has no migration.
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_existing_staff_groups_get_the_variant_permissions_their_campaign_rights_imply():
    """Issue 22, item 11: an install whose groups were made before A/B tests gets the variant rights at migrate."""
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("campaigns", "0013_background_runs")])
    for name in ("Viewer", "Campaign editor", "Campaign sender"):
        Group.objects.create(name=name)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    rights = {g.name: sorted(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()}
    assert rights == {"Viewer": ["view_campaignvariant"],
                      "Campaign editor": ["add_campaignvariant", "change_campaignvariant", "delete_campaignvariant",
                                          "view_campaignvariant"],
                      "Campaign sender": ["add_campaignvariant", "change_campaignvariant", "delete_campaignvariant",
                                          "view_campaignvariant"]}
