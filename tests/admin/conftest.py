import pytest
from django.contrib.auth.models import Permission

from campaigns.models import DeliveryLog, Recipient
from tests.support.factories import CampaignFactory, UserFactory


@pytest.fixture
def staff_client(client, db):
    client.force_login(UserFactory(is_superuser=True))
    return client


@pytest.fixture
def viewer_client(client, db):
    """Staff with view permission on campaigns and delivery logs, and nothing else."""
    user = UserFactory()
    user.user_permissions.set(Permission.objects.filter(
        codename__in=["view_campaign", "view_deliverylog", "view_recipient"]))
    client.force_login(user)
    return client


def add_recipients(campaign, n, data=None, start=0):
    recipients = [Recipient(campaign=campaign, email=f"r{i:04d}@example.com", first_name=f"First{i}",
                            data=data if data is not None else {"city": f"City{i}"}) for i in range(start, start + n)]
    Recipient.objects.bulk_create(recipients)
    campaign.total_recipients = campaign.recipients.count()
    campaign.save(update_fields=["total_recipients"])
    return recipients


def add_logs(campaign, statuses, sent_at=None, provider="smtp"):
    """One recipient and delivery log per entry of STATUSES; returns the logs."""
    start = campaign.recipients.count()
    recipients = add_recipients(campaign, len(statuses), start=start)
    logs = [DeliveryLog(campaign=campaign, recipient=r, email=r.email, status=status, provider=provider,
                        sent_at=sent_at if status == "sent" else None) for r, status in zip(recipients, statuses)]
    return DeliveryLog.objects.bulk_create(logs)


def emails_in(changelist_response):
    return sorted(str(row.email) for row in changelist_response.context["cl"].result_list)


@pytest.fixture
def campaign(db):
    return CampaignFactory()
