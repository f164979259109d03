"""Domain groups in the admin (campaigns.admin.domain_groups): staff set a provider's domains and limits."""

from django.urls import reverse

from campaigns.models import DomainGroup


def add(staff_client, **fields):
    data = {"name": "Yahoo", "domains": "", "enabled": "on", "per_second": 0, "per_minute": 0, "per_hour": 0,
            "backoff_seconds": 0, **fields}
    return staff_client.post(reverse("admin:campaigns_domaingroup_add"), data)


def test_a_group_is_added_with_its_domains_tidied_and_limits_and_listed(staff_client):
    DomainGroup.objects.all().delete()
    response = add(staff_client, domains="Yahoo.com, aol.com.\nymail.com", per_minute=100, backoff_seconds=120)

    assert response.status_code == 302
    group = DomainGroup.objects.get(name="Yahoo")
    assert (group.domains, group.per_minute, group.backoff_seconds) == (["aol.com", "yahoo.com", "ymail.com"], 100, 120)
    page = staff_client.get(reverse("admin:campaigns_domaingroup_changelist")).content.decode()
    assert "aol.com, yahoo.com, ymail.com" in page


def test_a_domain_of_another_group_or_not_a_domain_is_refused_with_the_reason(staff_client):
    DomainGroup.objects.all().delete()
    DomainGroup.objects.create(name="AOL", domains=["aol.com"])

    clash = add(staff_client, domains="yahoo.com, aol.com")
    not_a_domain = add(staff_client, domains="someone@yahoo.com")

    assert "Already in another group: aol.com" in clash.content.decode()
    assert "Not a domain: someone@yahoo.com" in not_a_domain.content.decode()
    assert list(DomainGroup.objects.values_list("name", flat=True)) == ["AOL"]
