"""SendGrid's published OpenAPI description of mail/send, as a JSON Schema validator.

The description (contracts/sendgrid/tsg_mail_v3.yaml, MIT, from twilio/sendgrid-oai) is OpenAPI 3.1,
whose schemas are JSON Schema 2020-12, so a JSON Schema validator checks request bodies against it as
published, following its ``$ref``s into ``components``. jsonschema-rs does it in about 0.2 ms for a
batch of 200 (the pure-Python jsonschema needs some 25 ms, which would make the fake server the
costliest part of a send benchmark). The fake SendGrid server refuses what the description refuses,
and the provider's tests check every payload kind against it. No Django here: the fake server runs
as a plain process.
"""

import functools
from pathlib import Path

import jsonschema_rs
import yaml

CONTRACT_FILE = Path(__file__).resolve().parents[1] / "contracts" / "sendgrid" / "tsg_mail_v3.yaml"
MAIL_SEND_BODY = "#/components/requestBodies/PostMailSend/content/application~1json/schema"


@functools.cache
def mail_send_validator():
    spec = yaml.safe_load(CONTRACT_FILE.read_text(encoding="utf-8"))
    # The request body schema, with the description's components beside it so that its $refs resolve.
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": MAIL_SEND_BODY,
              "components": spec["components"]}
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def field_of(error):
    """A validation error's place as SendGrid names fields: ``personalizations.0.to.0.email``."""
    return ".".join(str(part) for part in error.instance_path) or None


def contract_violations(payload):
    """[(field, message)] for every way PAYLOAD breaks the description; empty when it conforms."""
    errors = sorted(mail_send_validator().iter_errors(payload), key=lambda e: list(map(str, e.instance_path)))
    return [(field_of(error), error.message) for error in errors]
