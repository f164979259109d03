"""SendGrid's published OpenAPI description of mail/send, as a JSON Schema validator.

The description (contracts/sendgrid/tsg_mail_v3.yaml, MIT, from twilio/sendgrid-oai) is OpenAPI 3.1,
whose schemas are JSON Schema 2020-12, so ``jsonschema`` validates request bodies against it as
published, following its ``$ref``s into ``components``. The fake SendGrid server refuses what it
refuses, and the provider's tests check every payload kind against it. No Django here: the fake
server runs as a plain process.
"""

import functools
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

CONTRACT_FILE = Path(__file__).resolve().parents[2] / "contracts" / "sendgrid" / "tsg_mail_v3.yaml"
SPEC_URI = "urn:sendgrid:tsg_mail_v3"
MAIL_SEND_BODY = "/components/requestBodies/PostMailSend/content/application~1json/schema"


@functools.cache
def mail_send_validator():
    spec = yaml.safe_load(CONTRACT_FILE.read_text(encoding="utf-8"))
    registry = Registry().with_resource(SPEC_URI, Resource(contents=spec, specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"{SPEC_URI}#{MAIL_SEND_BODY}"}, registry=registry,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def field_of(error):
    """A validation error's place as SendGrid names fields: ``personalizations.0.to.0.email``."""
    return ".".join(str(part) for part in error.absolute_path) or None


def contract_violations(payload):
    """[(field, message)] for every way PAYLOAD breaks the description; empty when it conforms."""
    errors = sorted(mail_send_validator().iter_errors(payload), key=lambda e: list(map(str, e.absolute_path)))
    return [(field_of(error), error.message) for error in errors]
