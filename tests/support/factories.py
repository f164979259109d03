"""Factories for the data model; tests build rows through these, never by hand."""

import factory
from django.contrib.auth import get_user_model

from campaigns.models import Campaign, DeliveryLog, EmailTemplate, Recipient, SendingAccount, SendingPool, Suppression

HTML_BODY = (
    '<p>Hello {{ first_name|default:"there" }},</p><p>News for {{ email }}.</p>'
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery staple")
    is_staff = True


class EmailTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EmailTemplate

    key = factory.Sequence(lambda n: f"template-{n}")
    name = factory.Sequence(lambda n: f"Template {n}")
    subject = "Hello {{ first_name }}"
    html_body = HTML_BODY


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"Campaign {n}")
    subject = 'News for {{ first_name|default:"you" }}'
    from_email = "Acme <news@example.com>"
    html_body = HTML_BODY


class RecipientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Recipient

    campaign = factory.SubFactory(CampaignFactory)
    email = factory.Sequence(lambda n: f"person{n}@example.com")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    data = factory.Dict({"city": "Lisbon"})


class DeliveryLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeliveryLog

    recipient = factory.SubFactory(RecipientFactory)
    campaign = factory.SelfAttribute("recipient.campaign")
    email = factory.SelfAttribute("recipient.email")


class SuppressionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Suppression

    email = factory.Sequence(lambda n: f"suppressed{n}@example.com")
    reason = Suppression.Reason.UNSUBSCRIBED


class SendingAccountFactory(factory.django.DjangoModelFactory):
    """An SMTP account without TLS or AUTH (the local sinks), unless told otherwise."""

    class Meta:
        model = SendingAccount

    name = factory.Sequence(lambda n: f"account-{n}")
    kind = SendingAccount.Kind.SMTP
    host = "127.0.0.1"
    security = SendingAccount.Security.NONE


def pool_of(*accounts, name=None):
    pool = SendingPool.objects.create(name=name or f"pool-{SendingPool.objects.count() + 1}")
    pool.accounts.set(accounts)
    return pool
