"""The one error an import raises for a file it will not import."""


class ImportRefused(Exception):
    """The file (or the campaign) cannot be imported; the message is one sentence meant for staff."""
