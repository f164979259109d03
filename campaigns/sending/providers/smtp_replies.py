"""What an SMTP reply means for one message: one table, read top to bottom, first match wins.

A reply is judged by its phase (MAIL FROM, RCPT TO, the DATA command, or the reply to the content
after the final dot), its three-digit reply code (RFC 5321 4.2) and, when the server sends one, the
RFC 3463 enhanced status code at the start of its text (RFC 2034).

The reply code decides permanence: 2yz accepted, 4yz try again later, 5yz permanent (RFC 5321
4.2.1). The enhanced code's subject decides whom a permanent refusal is about:

- A refusal whose text names our sender is about us, whatever its enhanced code: "Sender address
  rejected" and the like, or a reply that quotes our MAIL FROM address rather than the recipient's.
  Postfix's reject_unlisted_sender answers every RCPT with "550 5.1.0 <our address>: Sender address
  rejected: User unknown in local recipient table": X.1.0 is "other address status" (RFC 3463), which
  does not say whose address; the text does.
- X.1.Y is addressing status. X.1.1 (bad destination mailbox), X.1.2 (bad destination system),
  X.1.3 (bad destination address syntax), X.1.6 (mailbox moved), X.1.10 (null MX, RFC 7505) and the
  rest are about the recipient's address: only these suppress it. X.1.7 and X.1.8 are the
  exception: they are about the *sender's* address, so about us.
- X.7.Y is security or policy status (X.7.1 "delivery not authorized, message refused": relay
  access denied, DMARC, a block list). It is about us or our message, never a reason to stop mailing
  the recipient.
- Any other subject (mailbox full X.2.2, message too big X.3.4, ...) fails the message alone.

A permanent refusal without an enhanced code is not a bounce: RFC 5321 gives 550 to "mailbox not
found, no access, or command rejected for policy reasons" alike, so a bare 550 cannot tell an
unknown mailbox from a relay that refuses us. It fails the message without suppressing the address.

Whom a refusal concerns (``Scope``) is what the SMTP provider acts on: a refusal that concerns the
sender at MAIL FROM is a provider problem at once; the same permanent refusal that is not about an
address for every recipient of a batch is a provider problem too (see providers.smtp).

docs/delivery-guarantees.md ("Provider answers") renders this table for staff; keep the two in step.
"""

import re
from dataclasses import dataclass
from enum import Enum

from campaigns.sending.providers.base import Outcome


class Phase(str, Enum):
    MAIL = "MAIL FROM"
    RCPT = "RCPT TO"
    DATA = "DATA"
    CONTENT = "after the message content"


class Scope(str, Enum):
    ADDRESS = "address"  # the recipient's address is bad: suppress it
    MESSAGE = "message"  # this message, to this recipient, this time
    SENDER = "sender"  # us: our credentials, sender address, relay rights or reputation


ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>]+>?")
ENHANCED_CODE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
ANY_PHASE = frozenset(Phase)
RECIPIENT_PHASES = frozenset({Phase.RCPT, Phase.DATA, Phase.CONTENT})


# Words servers use when the envelope sender is what they refuse (Postfix, Exim, Sendmail, Exchange).
SENDER_WORDS = re.compile(r"\bsender\b.{0,20}\b(rejected|refused|denied|not allowed|unknown|invalid|verify failed|"
                          r"not verified|unverified)|\b(unverified|invalid|unknown|bad) sender\b|"
                          r"\bfrom address\b.{0,20}\b(rejected|refused|denied|not allowed)",
                          re.IGNORECASE)
RECIPIENT_WORDS = re.compile(r"\brecipient address rejected\b", re.IGNORECASE)


def names_our_sender(text, sender):
    """Whether a refusal's TEXT is about our envelope SENDER rather than the recipient: it says so
    ("Sender address rejected" and the like), or it quotes our address, and it does not say it
    rejects the recipient's address."""
    if RECIPIENT_WORDS.search(text):
        return False
    if SENDER_WORDS.search(text):
        return True
    return bool(sender) and sender.lower() in (address.strip("<>").lower() for address in ADDRESS.findall(text))


@dataclass(frozen=True)
class Rule:
    name: str
    outcome: Outcome
    scope: Scope
    phases: frozenset
    code: re.Pattern  # matched against the three-digit reply code
    enhanced: re.Pattern  # matched against the enhanced code, "" when there is none
    names_sender: bool = False  # only for a reply whose text names our sender (names_our_sender)

    @property
    def suppresses(self):
        return self.scope == Scope.ADDRESS and self.outcome == Outcome.FAILED


def _rule(name, outcome, scope, phases, code, enhanced=".*", names_sender=False):
    return Rule(name, outcome, scope, frozenset(phases), re.compile(code), re.compile(enhanced), names_sender)


RULES = (
    _rule("accepted", Outcome.SENT, Scope.MESSAGE, ANY_PHASE, r"2\d\d"),
    _rule("sender refused", Outcome.FAILED, Scope.SENDER, {Phase.MAIL}, r"5\d\d"),
    _rule("sender deferred", Outcome.DEFERRED, Scope.SENDER, {Phase.MAIL}, r"4\d\d"),
    _rule("our sender address refused", Outcome.FAILED, Scope.SENDER, RECIPIENT_PHASES, r"5\d\d", r"5\.1\.[78]"),
    _rule("our sender named in the refusal", Outcome.FAILED, Scope.SENDER, RECIPIENT_PHASES, r"5\d\d",
          names_sender=True),
    _rule("bad recipient address", Outcome.FAILED, Scope.ADDRESS, RECIPIENT_PHASES, r"5\d\d", r"5\.1\.\d+"),
    _rule("policy refusal", Outcome.FAILED, Scope.SENDER, RECIPIENT_PHASES, r"5\d\d", r"5\.7\.\d+"),
    _rule("permanent refusal of this message", Outcome.FAILED, Scope.MESSAGE, RECIPIENT_PHASES, r"5\d\d",
          r"5\.\d+\.\d+"),
    _rule("permanent refusal without enhanced code", Outcome.FAILED, Scope.MESSAGE, RECIPIENT_PHASES, r"5\d\d", ""),
    _rule("temporary refusal", Outcome.DEFERRED, Scope.MESSAGE, RECIPIENT_PHASES, r"4\d\d"),
    # A reply outside RFC 5321's classes: after the content the server may have taken the message.
    _rule("unexpected reply after the content", Outcome.UNKNOWN, Scope.MESSAGE, {Phase.CONTENT}, r".*"),
    _rule("unexpected reply", Outcome.DEFERRED, Scope.MESSAGE, ANY_PHASE, r".*"),
)


@dataclass(frozen=True)
class Verdict:
    phase: Phase
    code: int
    enhanced: str
    text: str
    rule: Rule

    @property
    def outcome(self):
        return self.rule.outcome

    @property
    def suppresses(self):
        return self.rule.suppresses

    @property
    def scope(self):
        return self.rule.scope

    @property
    def throttles(self):
        """Whether the receiving server is slowing us down rather than refusing this recipient: a
        temporary refusal at RCPT, DATA or after the content that is a 421 (the server closes the
        connection: Yahoo's "421 4.7.0 [TSS04]") or a 4.7.x policy deferral (Outlook's 451 4.7.500 and
        the like). A full mailbox (4.2.2), greylisting without 4.7 or any 5xx stays per recipient."""
        return (self.outcome == Outcome.DEFERRED and self.phase in RECIPIENT_PHASES
                and (self.code == 421 or self.enhanced.startswith("4.7.")))

    @property
    def key(self):
        """What makes two refusals "the same": the codes, not the text (which often names the address)."""
        return self.phase, self.code, self.enhanced

    @property
    def error(self):
        return f"SMTP {self.phase.value} refused ({self.rule.name}): {self.code} {self.text}".rstrip()

    @property
    def error_for_everyone(self):
        """The error with the recipient's address left out: for a refusal that met every recipient
        alike, logged and shown on the campaign."""
        return ADDRESS.sub("<recipient>", self.error)


def enhanced_code(text):
    match = ENHANCED_CODE.match(text.lstrip())
    return ".".join(match.groups()) if match else ""


def classify(phase, code, text, sender=""):
    """The Verdict for reply CODE with TEXT in PHASE, for a message whose envelope sender is SENDER."""
    enhanced = enhanced_code(text)
    digits = f"{code:03d}" if isinstance(code, int) and code >= 0 else str(code)
    about_sender = names_our_sender(text, sender)
    for rule in RULES:
        if (phase in rule.phases and rule.code.fullmatch(digits) and rule.enhanced.fullmatch(enhanced)
                and (about_sender or not rule.names_sender)):
            return Verdict(phase, code, enhanced, text.strip(), rule)
    raise AssertionError(f"no rule for {phase} {code}")  # the last rule matches everything


def uniform_refusal(verdicts):
    """The refusal that answered every refused message alike, when it is permanent and not about the
    addresses (so about us: a provider problem), else None.

    It takes two: one refusal cannot tell a relay that refuses us from one recipient's server that does."""
    if len(verdicts) < 2:
        return None
    first = verdicts[0]
    if first.outcome != Outcome.FAILED or first.scope == Scope.ADDRESS:
        return None
    return first if all(v.key == first.key for v in verdicts) else None


__all__ = ["Phase", "Scope", "Rule", "RULES", "Verdict", "classify", "enhanced_code", "names_our_sender",
           "uniform_refusal"]
