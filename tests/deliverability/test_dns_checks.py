"""The DNS checks (campaigns/deliverability/dns_checks.py) against the tests' local DNS server, with the
zones each test writes: passing, failing with the record to publish, and a server that does not answer."""

import pytest
from django.utils import timezone

from campaigns.deliverability import dkim, dns_checks
from campaigns.deliverability.dns_checks import ERROR, PASS, WARNING
from campaigns.models import DeliveryLog, SendingAccount, SendingAccountUsage
from tests.admin.conftest import add_logs
from tests.support.factories import CampaignFactory, SendingAccountFactory

KEY = dkim.generate_private_key()


def relay(host="203.0.113.25", **fields):
    return SendingAccount(name="relay", kind=SendingAccount.Kind.SMTP, host=host, **fields)


def signing(**fields):
    return relay(dkim_domain="example.com", dkim_selector="s1", dkim_private_key=KEY, **fields)


def by_name(checks):
    return {check.name: check for check in checks}


def test_a_domain_set_up_for_its_relay_passes_every_check(dns_server):
    dns_server.txt("example.com", "v=spf1 mx include:_spf.example.net ~all")
    dns_server.txt("_spf.example.net", "v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.0/24 -all")
    dns_server.txt("s1._domainkey.example.com", dkim.record_value(KEY))
    dns_server.txt("_dmarc.example.com", "v=DMARC1; p=quarantine; rua=mailto:d@example.com")
    dns_server.add("example.com. 300 IN MX 10 mx.example.com.", "mx.example.com. 300 IN A 192.0.2.10")

    checks = by_name(dns_checks.check_domain(signing(), "example.com"))

    assert {name: check.status for name, check in checks.items()} == {
        "SPF": PASS, "DKIM": PASS, "DMARC": PASS, "MX": PASS}
    assert "p=quarantine" in checks["DMARC"].message


def test_spf_that_does_not_name_the_relay_fails_with_the_record_to_publish(dns_server):
    dns_server.txt("example.com", "v=spf1 ip4:192.0.2.1 -all")

    spf = by_name(dns_checks.check_domain(relay(), "example.com"))["SPF"]

    assert spf.status == ERROR and "203.0.113.25" in spf.message
    assert spf.record == 'example.com. TXT "v=spf1 ip4:192.0.2.1 ip4:203.0.113.25 -all"'


def test_no_spf_record_at_all(dns_server):
    spf = by_name(dns_checks.check_domain(relay(), "example.com"))["SPF"]
    assert spf.status == ERROR and spf.message == "example.com has no SPF record."
    assert spf.record == 'example.com. TXT "v=spf1 ip4:203.0.113.25 ~all"'


def test_spf_follows_a_mechanisms_redirects_and_a_relay_named_by_host(dns_server):
    dns_server.txt("example.com", "v=spf1 redirect=_spf.example.com")
    dns_server.txt("_spf.example.com", "v=spf1 a:out.example.com -all")
    dns_server.add("out.example.com. 300 IN A 203.0.113.25", "relay.example.com. 300 IN A 203.0.113.25")

    assert by_name(dns_checks.check_domain(relay(host="relay.example.com"), "example.com"))["SPF"].status == PASS
    assert by_name(dns_checks.check_domain(relay(host="198.51.100.9"), "example.com"))["SPF"].status == ERROR


@pytest.mark.parametrize("kind, host, include", [
    (SendingAccount.Kind.SENDGRID, "", "sendgrid.net"),
    (SendingAccount.Kind.SES_SMTP, "email-smtp.eu-west-1.amazonaws.com", "amazonses.com"),
    (SendingAccount.Kind.SMTP, "smtp.gmail.com", "_spf.google.com"),
])
def test_a_providers_account_needs_the_providers_include(dns_server, kind, host, include):
    account = SendingAccount(name="provider", kind=kind, host=host)
    dns_server.txt("example.com", "v=spf1 include:_spf.example.net ~all")
    dns_server.txt("_spf.example.net", f"v=spf1 include:{include} ~all")
    assert by_name(dns_checks.check_domain(account, "example.com"))["SPF"].status == PASS

    dns_server.clear()
    dns_server.txt("example.com", "v=spf1 include:_spf.other.example ~all")
    spf = by_name(dns_checks.check_domain(account, "example.com"))["SPF"]
    assert spf.status == ERROR and f"include:{include} ~all" in spf.record


def test_spf_over_ten_lookups_fails(dns_server):
    dns_server.txt("example.com", "v=spf1 " + " ".join(f"include:s{i}.example.com" for i in range(11)) + " ~all")
    for i in range(11):
        dns_server.txt(f"s{i}.example.com", "v=spf1 ip4:203.0.113.25 -all")

    spf = by_name(dns_checks.check_domain(relay(), "example.com"))["SPF"]

    assert spf.status == ERROR and "more than 10 lookups" in spf.message


def test_dkim_missing_or_another_key_fails_with_the_record(dns_server):
    expected = dkim.dns_record("s1", "example.com", KEY)
    missing = by_name(dns_checks.check_domain(signing(), "example.com"))["DKIM"]
    assert missing.status == ERROR and missing.record == expected

    dns_server.txt("s1._domainkey.example.com", dkim.record_value(dkim.generate_private_key()))
    other = by_name(dns_checks.check_domain(signing(), "example.com"))["DKIM"]
    assert other.status == ERROR and "not the one" in other.message and other.record == expected


def test_an_smtp_account_without_dkim_is_an_error(dns_server):
    check = by_name(dns_checks.check_domain(relay(), "example.com"))["DKIM"]
    assert check.status == ERROR and "does not sign" in check.message


def test_dmarc_missing_is_a_warning_with_the_record(dns_server):
    dmarc = by_name(dns_checks.check_domain(relay(), "news.example.com"))["DMARC"]
    assert dmarc.status == WARNING
    assert dmarc.record.startswith('_dmarc.example.com. TXT "v=DMARC1; p=none;')


@pytest.mark.parametrize("policy, status", [("reject", ERROR), ("none", WARNING)])
def test_dmarc_without_spf_or_dkim_aligned(dns_server, policy, status):
    dns_server.txt("_dmarc.example.com", f"v=DMARC1; p={policy}")  # the organisational domain's
    dmarc = by_name(dns_checks.check_domain(relay(), "news.example.com"))["DMARC"]
    assert dmarc.status == status and "Neither SPF nor DKIM aligns" in dmarc.message


def test_dkim_alone_aligns_for_dmarc(dns_server):
    dns_server.txt("s1._domainkey.example.com", dkim.record_value(KEY))
    dns_server.txt("_dmarc.example.com", "v=DMARC1; p=reject")
    checks = by_name(dns_checks.check_domain(signing(), "news.example.com"))
    assert checks["SPF"].status == ERROR and checks["DKIM"].status == PASS and checks["DMARC"].status == PASS


def test_a_dkim_domain_of_another_organisation_does_not_align(dns_server):
    dns_server.txt("s1._domainkey.example.com", dkim.record_value(KEY))
    assert by_name(dns_checks.check_domain(signing(), "example.org"))["DKIM"].status == WARNING


def test_no_mx_for_the_envelope_domain_is_a_warning(dns_server):
    mx = by_name(dns_checks.check_domain(relay(), "example.com"))["MX"]
    assert mx.status == WARNING and mx.record == "example.com. MX 10 mail.example.com."


def test_a_dns_server_that_does_not_answer_gives_a_check_not_an_exception(settings):
    settings.DNS_RESOLVER, settings.DNS_TIMEOUT_SECONDS = "127.0.0.1:9", 0.5  # nothing listens there
    [check] = dns_checks.check_domain(relay(), "example.com")
    assert check.status == ERROR and "did not complete" in check.message


@pytest.mark.parametrize("complaints, holds, says", [(0, True, "under 0.1 %"), (2, True, "over 0.1 %"),
                                                     (3, False, "over Google's 0.3 % limit")])
def test_the_checklist_reads_the_complaint_rate_and_always_holds_one_click_unsubscribe(db, complaints, holds, says):
    account = SendingAccountFactory(name="relay")
    campaign = CampaignFactory()
    SendingAccountUsage.objects.create(account=account, campaign=campaign, hour=timezone.now(), sent=1000)
    add_logs(campaign, ["sent"] * 5, provider="relay")
    DeliveryLog.objects.filter(pk__in=DeliveryLog.objects.filter(campaign=campaign).values("pk")[:complaints]).update(
        complained_at=timezone.now())

    rows = {rule: (ok, detail) for rule, ok, detail in dns_checks.checklist(account, checks=None)}

    assert rows["Complaint rate under 0.3 %"][0] is holds and says in rows["Complaint rate under 0.3 %"][1]
    assert rows["One-click unsubscribe"][0] is True
    assert rows["SPF"] == (None, "not checked: Check DNS")
