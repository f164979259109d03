"""Why an import did not finish: the error it raises for a file it will not import, and the sentence
staff read when it ran out of time."""

from django.conf import settings


class ImportRefused(Exception):
    """The file (or the campaign) cannot be imported; the message is one sentence meant for staff."""


def time_limit_reason() -> str:
    seconds = settings.IMPORT_TIME_LIMIT_SECONDS
    limit = f"{seconds // 60} minutes" if seconds % 60 == 0 else f"{seconds} seconds"
    return (f"The import was stopped after {limit}, its time limit (IMPORT_TIME_LIMIT_SECONDS), "
            f"so nothing was imported; split the file into smaller ones and upload them.")
