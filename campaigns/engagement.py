"""A campaign's engagement counts and rates, from its counters (kept up to date by the events).

Counters count recipients, not events: the first open, click, bounce... of each recipient. Opens,
clicks and unsubscribes are rates of delivered mail (of sent mail when no delivery events arrive, as
on the SMTP path); bounces and complaints are rates of sent mail, the figure mailbox providers watch.
"""

from dataclasses import dataclass


def _percent(part, whole):
    return round(100 * part / whole, 2) if whole else None


@dataclass(frozen=True)
class Engagement:
    sent: int
    delivered: int
    opened: int
    clicked: int
    bounced: int
    complained: int
    unsubscribed: int

    @classmethod
    def of(cls, campaign):
        return cls(campaign.sent_count, campaign.delivered_count, campaign.opened_count, campaign.clicked_count,
                   campaign.bounced_count, campaign.complained_count, campaign.unsubscribed_count)

    @property
    def reached(self):
        return self.delivered or self.sent

    def rates(self):
        """Percentages (None when there is nothing to divide by)."""
        return {
            "delivered": _percent(self.delivered, self.sent),
            "opened": _percent(self.opened, self.reached),
            "clicked": _percent(self.clicked, self.reached),
            "unsubscribed": _percent(self.unsubscribed, self.reached),
            "bounced": _percent(self.bounced, self.sent),
            "complained": _percent(self.complained, self.sent),
        }
