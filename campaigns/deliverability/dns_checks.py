"""The DNS checks of sending: for a From domain and a sending account, whether SPF authorises the
account's server or provider, whether its DKIM key is published and matches the stored one, whether a
DMARC policy exists and SPF or DKIM aligns with the From domain, and whether the envelope domain has
MX records for bounces; and the bulk-sender checklist (Gmail and Yahoo, February 2024) built on them.

Every lookup goes through `resolver()`: the system's resolver, or DNS_RESOLVER ("host:port") — the
tests' local DNS server. Nothing here runs unless staff ask (the account page's "Check DNS") or a
preflight checks a campaign that sends through a pool's accounts.

Each failure carries the record to publish. Errors are what makes mail fail authentication (SPF does
not authorise the server, the DKIM key is missing or differs, DMARC fails alignment under a policy
that rejects or quarantines); warnings are what a receiver may hold against the sender.
"""

import ipaddress
from dataclasses import dataclass, field

import dns.exception
import dns.resolver
from django.conf import settings

from campaigns import stats
from campaigns.deliverability import dkim
from campaigns.models import SendingAccount

PASS, WARNING, ERROR = "pass", "warning", "error"
SPF_LOOKUP_LIMIT = 10  # RFC 7208 4.6.4
# What a provider's customers put in their SPF record: the include that authorises its servers.
PROVIDER_INCLUDES = {
    "sendgrid": "sendgrid.net",
    "ses": "amazonses.com",
    "google": "_spf.google.com",
    "microsoft": "spf.protection.outlook.com",
}
COMPLAINT_WARNING, COMPLAINT_LIMIT = 0.001, 0.003  # 0.1 %, and Google's 0.3 %


@dataclass
class Check:
    name: str  # "SPF", "DKIM", "DMARC", "MX"
    status: str  # PASS, WARNING or ERROR
    message: str
    record: str = ""  # what to publish, for a failure
    domain: str = ""

    @property
    def passed(self):
        return self.status == PASS


# --- lookups --------------------------------------------------------------------------------------

def resolver():
    """A dnspython resolver: DNS_RESOLVER's server ("host:port", "host" or "[IPv6]:port") when set, else
    the system's."""
    configured = settings.DNS_RESOLVER
    if not configured:
        found = dns.resolver.Resolver()
    else:
        if configured.startswith("["):
            host, _, port = configured[1:].partition("]")
            port = port.lstrip(":")
        elif configured.count(":") == 1:
            host, port = configured.split(":")
        else:
            host, port = configured, ""
        found = dns.resolver.Resolver(configure=False)
        found.nameservers = [host]
        found.port = int(port or 53)
    found.lifetime = settings.DNS_TIMEOUT_SECONDS
    return found


class Lookups:
    """The lookups of one check run, through one resolver; answers are kept for the run."""

    def __init__(self):
        self.resolver = resolver()
        self.cache = {}

    def query(self, name, rdtype):
        """The answer's records as text (TXT strings joined), [] for NXDOMAIN or no answer. Raises
        dns.exception.DNSException when the server does not answer."""
        key = (name.lower().rstrip("."), rdtype)
        if key not in self.cache:
            try:
                answer = self.resolver.resolve(key[0] + ".", rdtype, raise_on_no_answer=False)
            except dns.resolver.NXDOMAIN:
                records = []
            else:
                if rdtype == "TXT":
                    records = [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
                elif rdtype == "MX":
                    records = [str(r.exchange).rstrip(".") for r in sorted(answer, key=lambda r: r.preference)]
                else:
                    records = [r.to_text() for r in answer]
            self.cache[key] = records
        return self.cache[key]

    def addresses(self, name):
        return [ipaddress.ip_address(a) for rdtype in ("A", "AAAA") for a in self.query(name, rdtype)]


def organisational_domain(domain):
    """The last two labels. No public suffix list is installed, so a domain under a two-label suffix
    (example.co.uk) counts as its suffix's: alignment is then judged more loosely than DMARC does."""
    return ".".join(domain.lower().rstrip(".").split(".")[-2:])


def aligned(domain, from_domain):
    """DMARC's relaxed alignment: the same organisational domain."""
    return bool(domain) and organisational_domain(domain) == organisational_domain(from_domain)


# --- SPF ------------------------------------------------------------------------------------------

def spf_record(lookups, domain):
    records = [r for r in lookups.query(domain, "TXT") if r.lower().startswith("v=spf1")]
    return records[0] if len(records) == 1 else (None if not records else "")


@dataclass
class SpfExpansion:
    includes: set = field(default_factory=set)
    networks: list = field(default_factory=list)
    lookups: int = 0
    problems: list = field(default_factory=list)


def expand_spf(lookups, domain, expansion=None):
    """Every include target and every network the record of DOMAIN authorises (pass qualifier only),
    following include: and redirect= within SPF's 10-lookup limit."""
    expansion = expansion or SpfExpansion()
    record = spf_record(lookups, domain)
    if not record:
        expansion.problems.append(f"{domain} has {'no' if record is None else 'more than one'} SPF record")
        return expansion
    redirect = None
    for term in record.split()[1:]:
        qualifier = term[0] if term[0] in "+-~?" else "+"
        term = term.lstrip("+-~?")
        name, _, value = term.partition(":")
        name = name.lower()
        if name.startswith("redirect="):
            redirect = term.split("=", 1)[1]
            continue
        if name in ("include", "a", "mx", "ptr", "exists") or name.startswith(("a/", "mx/")):
            expansion.lookups += 1
            if expansion.lookups > SPF_LOOKUP_LIMIT:
                expansion.problems.append(f"the SPF record of {domain} needs more than {SPF_LOOKUP_LIMIT} lookups "
                                          "(RFC 7208 permerror): receivers reject it")
                return expansion
        if qualifier != "+":
            continue
        if name == "include":
            expansion.includes.add(value.lower().rstrip("."))
            expand_spf(lookups, value, expansion)
        elif name in ("ip4", "ip6"):
            try:
                expansion.networks.append(ipaddress.ip_network(value, strict=False))
            except ValueError:
                expansion.problems.append(f"{value} in {domain}'s SPF record is not an address")
        elif name.split("/")[0] in ("a", "mx"):
            kind, _, prefix = term.partition("/")
            target = (kind.partition(":")[2] or domain)
            hosts = lookups.query(target, "MX") if name.startswith("mx") else [target]
            for host in hosts:
                for address in lookups.addresses(host):
                    bits = int(prefix) if prefix.isdigit() else address.max_prefixlen
                    expansion.networks.append(ipaddress.ip_network(f"{address}/{bits}", strict=False))
    if redirect:
        expansion.lookups += 1
        expand_spf(lookups, redirect, expansion)
    return expansion


def provider_of(account):
    """The provider whose SPF include authorises ACCOUNT's servers, or None for a relay of its own."""
    host = (account.host or "").lower()
    if account.kind == SendingAccount.Kind.SENDGRID:
        return "sendgrid"
    if account.kind == SendingAccount.Kind.SES_SMTP or host.endswith("amazonaws.com"):
        return "ses"
    if host.endswith(("gmail.com", "google.com", "googlemail.com")):
        return "google"
    if host.endswith(("office365.com", "outlook.com")):
        return "microsoft"
    return None


def relay_addresses(lookups, account):
    try:
        return [ipaddress.ip_address(account.host)]
    except ValueError:
        return lookups.addresses(account.host)


def check_spf(lookups, account, domain):
    provider = provider_of(account)
    expansion = expand_spf(lookups, domain)
    record = spf_record(lookups, domain)
    wanted = f"include:{PROVIDER_INCLUDES[provider]}" if provider else None
    if provider:
        authorised = PROVIDER_INCLUDES[provider] in expansion.includes
        what = f"{account.name}'s provider ({wanted})"
    else:
        addresses = relay_addresses(lookups, account)
        authorised = bool(addresses) and all(any(a in net for net in expansion.networks) for a in addresses)
        wanted = " ".join(f"ip{a.version}:{a}" for a in addresses) or f"a:{account.host}"
        what = f"{account.name}'s server {account.host} ({', '.join(map(str, addresses)) or 'no address'})"
    over_limit = [p for p in expansion.problems if "lookups" in p]
    if authorised and not over_limit:
        return Check("SPF", PASS, f"{domain}'s SPF record authorises {what}.", domain=domain)
    if record:
        terms = record.split()
        fixed = " ".join(terms[:-1] + [wanted, terms[-1]] if terms[-1].lstrip("+-~?") == "all" else terms + [wanted])
    else:
        fixed = f"v=spf1 {wanted} ~all"
    if record is None:
        why = f"{domain} has no SPF record"
    elif record == "":
        why = f"{domain} has more than one SPF record, which receivers treat as an error: merge them into one"
    elif over_limit:
        why = "; ".join(over_limit)
    else:
        why = f"{domain}'s SPF record does not authorise {what}"
    return Check("SPF", ERROR, why + ".", record=f'{domain}. TXT "{fixed}"', domain=domain)


# --- DKIM -----------------------------------------------------------------------------------------

def dkim_tags(text):
    return {k.strip().lower(): v.strip() for k, _, v in (part.partition("=") for part in text.split(";")) if k.strip()}


def check_dkim(lookups, account, from_domain):
    if account.kind == SendingAccount.Kind.SENDGRID:
        return Check("DKIM", WARNING, f"{account.name} is a SendGrid account: SendGrid signs, once {from_domain} is "
                     "authenticated in SendGrid (Settings → Sender Authentication); not checked here.",
                     domain=from_domain)
    if not account.signs_with_dkim():
        return Check("DKIM", ERROR, f"{account.name} does not sign with DKIM: set its DKIM domain and selector and "
                     "generate a key (Gmail and Yahoo require DKIM from bulk senders).", domain=from_domain)
    name = dkim.record_name(account.dkim_selector, account.dkim_domain)
    publish = dkim.dns_record(account.dkim_selector, account.dkim_domain, account.dkim_private_key)
    published = [dkim_tags(t) for t in lookups.query(name, "TXT") if "p=" in t]
    if not published:
        return Check("DKIM", ERROR, f"No DKIM key is published at {name}.", record=publish, domain=account.dkim_domain)
    if not any(tags.get("p", "").replace(" ", "") == dkim.public_key_base64(account.dkim_private_key)
               for tags in published):
        return Check("DKIM", ERROR, f"The DKIM key published at {name} is not the one {account.name} signs with.",
                     record=publish, domain=account.dkim_domain)
    if not aligned(account.dkim_domain, from_domain):
        return Check("DKIM", WARNING, f"{account.name} signs as {account.dkim_domain}, which does not align with "
                     f"{from_domain}: DMARC does not count it.", domain=account.dkim_domain)
    return Check("DKIM", PASS, f"The key at {name} matches the one {account.name} signs with.",
                 domain=account.dkim_domain)


# --- DMARC ----------------------------------------------------------------------------------------

def dmarc_policy(lookups, domain):
    """The tags of the DMARC record that applies to DOMAIN (its own, else its organisational domain's),
    or None."""
    for name in dict.fromkeys((domain, organisational_domain(domain))):
        records = [r for r in lookups.query(f"_dmarc.{name}", "TXT") if r.replace(" ", "").lower().startswith("v=dmarc1")]
        if records:
            return dkim_tags(records[0])
    return None


def check_dmarc(lookups, domain, spf, dkim_check):
    tags = dmarc_policy(lookups, domain)
    publish = (f'_dmarc.{organisational_domain(domain)}. TXT "v=DMARC1; p=none; '
               f'rua=mailto:dmarc-reports@{organisational_domain(domain)}; adkim=r; aspf=r"')
    if tags is None:
        return Check("DMARC", WARNING, f"{domain} publishes no DMARC policy (Gmail and Yahoo require one from bulk "
                     "senders).", record=publish, domain=domain)
    policy = tags.get("sp" if domain != organisational_domain(domain) and "sp" in tags else "p", "none").lower()
    # The envelope (MAIL FROM) domain is the From domain's (SPF was checked on it), so SPF aligns when it
    # passes; DKIM aligns when its d= does.
    if spf.passed or dkim_check.passed:
        through = " and ".join(c.name for c in (spf, dkim_check) if c.passed)
        return Check("DMARC", PASS, f"{domain}'s DMARC policy is p={policy}; {through} aligned with it.", domain=domain)
    status = WARNING if policy == "none" else ERROR
    return Check("DMARC", status, f"Neither SPF nor DKIM aligns with {domain}, so DMARC fails "
                 f"(p={policy}: {'receivers are asked to ' + policy if policy != 'none' else 'reported only'}). "
                 "Fix SPF or DKIM above.", domain=domain)


# --- MX -------------------------------------------------------------------------------------------

def envelope_domain(account, from_domain):
    """Where bounces go: the account's bounce domain when it has one (VERP, issue 24 item 1), else the
    From domain, which is the envelope sender's today."""
    return getattr(account, "bounce_domain", "") or from_domain


def check_mx(lookups, account, from_domain):
    domain = envelope_domain(account, from_domain)
    exchangers = lookups.query(domain, "MX")
    if exchangers:
        return Check("MX", PASS, f"{domain} receives mail (MX {', '.join(exchangers)}): bounces can come back.",
                     domain=domain)
    return Check("MX", WARNING, f"{domain} has no MX record: bounces sent to the envelope sender cannot come back.",
                 record=f"{domain}. MX 10 mail.{domain}.", domain=domain)


# --- all of them ----------------------------------------------------------------------------------

def check_domain(account, from_domain, lookups=None):
    """[Check] for mail From FROM_DOMAIN through ACCOUNT: SPF, DKIM, DMARC, MX. A server that does not
    answer gives an ERROR check naming it, never an exception."""
    lookups = lookups or Lookups()
    try:
        spf = check_spf(lookups, account, envelope_domain(account, from_domain))
        dkim_check = check_dkim(lookups, account, from_domain)
        return [spf, dkim_check, check_dmarc(lookups, from_domain, spf, dkim_check),
                check_mx(lookups, account, from_domain)]
    except dns.exception.DNSException as exc:
        return [Check("DNS", ERROR, f"The DNS lookups for {from_domain} did not complete ({exc.__class__.__name__}): "
                                    "check again later.", domain=from_domain)]


def account_domains(account):
    """The From domains to check for ACCOUNT: the ones it may send, else its DKIM domain."""
    return sorted(account.domains()) or ([account.dkim_domain] if account.dkim_domain else [])


def complaint_rate(account):
    """Complaints ÷ sent of ACCOUNT's mail over the account page's window (campaigns.stats, the figure the
    account page shows); None before it sent anything."""
    figures = stats.account_complaint_rate(account)
    return figures["complained"] / figures["sent"] if figures["sent"] else None


def checklist(account, checks):
    """The bulk-sender rules and whether each holds for ACCOUNT given CHECKS (None: DNS not checked yet):
    [(rule, holds, detail)], holds None when it cannot be said."""
    def rule(name):
        found = [c for c in checks or [] if c.name in (name, "DNS")]
        if not found:
            return None, "not checked: Check DNS" if checks is None else "no From domain to check"
        return all(c.passed for c in found), " ".join(c.message for c in found)

    rate = complaint_rate(account)
    if rate is None:
        complaints = (None, "nothing delivered yet")
    else:
        level = ("over Google's 0.3 % limit" if rate >= COMPLAINT_LIMIT else
                 "over 0.1 %: act before it reaches 0.3 %" if rate >= COMPLAINT_WARNING else "under 0.1 %")
        complaints = (rate < COMPLAINT_LIMIT, f"{rate:.2%} ({level})")
    return [("SPF", *rule("SPF")), ("DKIM", *rule("DKIM")), ("DMARC aligned", *rule("DMARC")),
            ("One-click unsubscribe", True, "Every message carries List-Unsubscribe with an https link and "
                                            "List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058)."),
            ("Complaint rate under 0.3 %", *complaints)]
