"""`import_recipients`: the one function the Celery task, the admin and the command call.

A file is read in chunks; each chunk is validated, de-duplicated and COPYed in bulk, all inside one
transaction that also writes the report, so a file is imported with its report or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from hashlib import blake2b
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files import File
from django.db import connection, transaction
from django.utils import timezone

from campaigns.audience.importing import reader, writer
from campaigns.audience.importing.headers import HeaderMap, map_headers
from campaigns.audience.importing.libraries import np, pd
from campaigns.audience.importing.report import ImportReport, RejectedRows
from campaigns.audience.importing.validation import MISSING_EMAIL, check_mx, validate_emails
from campaigns.exceptions import ImportRefused
from campaigns.models import Campaign, Recipient, RecipientImport

NAME_MAX_LENGTH = Recipient._meta.get_field("first_name").max_length
IMPORTABLE_STATUSES = (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)
UNEXPECTED_FAILURE = "The import failed unexpectedly and changed nothing; the worker log has the details."
ALREADY_STARTED = "This upload has already been imported, or is being imported."
REPORT_FIELDS = ("imported", "duplicates_in_file", "already_present", "invalid", "suppressed", "total_rows",
                 "rows_done", "rows_estimated", "status", "error", "started_at", "finished_at", "rejected_file",
                 "merge_tags", "new_merge_tags")

Progress = Callable[[int, int], None]


def time_limit_reason() -> str:
    """The sentence staff read when an import ran out of time."""
    seconds = settings.IMPORT_TIME_LIMIT_SECONDS
    limit = f"{seconds // 60} minutes" if seconds % 60 == 0 else f"{seconds} seconds"
    return (f"The import was stopped after {limit}, its time limit (IMPORT_TIME_LIMIT_SECONDS), "
            f"so nothing was imported; split the file into smaller ones and upload them.")


def import_recipients(target: RecipientImport | Campaign, path=None, sheet: str | None = None,
                      progress: Progress | None = None, check_mx: bool = False, resolver=None) -> ImportReport:
    """Import the file at `path` (default: the RecipientImport's upload) into the campaign.

    Raises ImportRefused, with one sentence for staff, when the file or the campaign cannot be imported;
    then nothing has changed (a RecipientImport is marked failed with that sentence).
    """
    record = target if isinstance(target, RecipientImport) else None
    campaign_id = record.campaign_id if record else target.pk
    if record:
        path = path or record.file.path
        sheet = sheet if sheet is not None else (record.sheet or None)
        record.started_at = timezone.now()
        # Only a queued upload starts, once: a second run of the same upload is refused and changes nothing.
        claimed = RecipientImport.objects.filter(pk=record.pk, status=RecipientImport.Status.QUEUED).update(
            status=RecipientImport.Status.RUNNING, started_at=record.started_at, error="")
        if not claimed:
            raise ImportRefused(ALREADY_STARTED)
    try:
        return _import(campaign_id, record, Path(path), sheet, progress or _no_progress, check_mx, resolver)
    except ImportRefused as refusal:
        if record and str(refusal) != ALREADY_STARTED:  # that one keeps the reason it was stopped for
            mark_failed(record.pk, str(refusal))
        raise
    except SoftTimeLimitExceeded:
        # Recorded here, before the exception reaches Celery: a reader polling the import never sees
        # a time limit reported as an unexpected failure.
        if record:
            mark_failed(record.pk, time_limit_reason())
        raise
    except Exception:
        if record:
            mark_failed(record.pk, UNEXPECTED_FAILURE)
        raise


def _import(campaign_id, record, path, sheet, progress, mx, resolver) -> ImportReport:
    table = reader.open_table(path, sheet, settings.IMPORT_MAX_ROWS)
    headers = map_headers(table.header)
    report = ImportReport()
    progress(0, table.rows_estimated)
    stored = []  # file storage is not transactional: a saved rejected-rows file is removed on rollback
    try:
        with RejectedRows(headers.original) as rejected, transaction.atomic():
            rows = _copy_rows(campaign_id, record, headers, table, report, rejected, progress, mx, resolver)
            report.recipient_import = _save_report(record, campaign_id, path, sheet, report, rejected, stored)
    except BaseException:
        for stored_path in stored:
            if os.path.exists(stored_path):
                os.unlink(stored_path)
        raise
    progress(rows.rows_read, rows.rows_read)
    return report


def _copy_rows(campaign_id, record, headers, table, report, rejected, progress, mx, resolver) -> RowChecker:
    """Inside the transaction: lock the campaign, COPY the accepted rows, count, update the campaign."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
    if campaign.status not in IMPORTABLE_STATUSES:
        raise ImportRefused(f"Recipients can only be added to a draft or scheduled campaign; "
                            f"'{campaign.name}' is {campaign.get_status_display().lower()}.")
    # The RecipientImport row is not locked here: progress is written to it from another connection.
    with connection.cursor() as django_cursor:
        cursor = django_cursor.cursor
        existing = writer.existing_emails(cursor, campaign_id)
        last_id = writer.last_recipient_id(cursor, campaign_id)
        known_tags = set(campaign.recipient_data_keys()) if existing else set()
        report.merge_tags = [tag for _, tag in headers.data]
        report.new_merge_tags = [tag for tag in report.merge_tags if tag not in known_tags]
        rows = RowChecker(headers, existing, mx, resolver)
        with writer.RecipientCopy(cursor, campaign_id, direct=not existing) as copy:
            for chunk in (c for c in table.chunks if len(c.frame)):
                copy.write_rows(*rows.check(chunk, report, rejected))
                progress(rows.rows_read, max(table.rows_estimated, rows.rows_read))
        if report.rows == 0:
            raise ImportRefused("The file has a header row but no data rows.")
        report.imported = copy.inserted
        report.already_present += copy.conflicts  # added by someone else while this file was read
        report.suppressed = writer.count_suppressed(cursor, campaign_id, last_id)
    # Every row of one import has every column of the file, so the merge-tag columns are known without
    # reading the rows back (a 10M campaign's first page, or its Send now, would scan them all).
    total = len(existing) + report.imported
    Campaign.objects.filter(pk=campaign_id).update(
        total_recipients=total, merge_fields=sorted(known_tags | set(report.merge_tags if report.imported else ())),
        merge_fields_total=total)
    return rows


class RowChecker:
    """Decides each row's fate, a chunk at a time, and formats the accepted ones for COPY."""

    def __init__(self, headers: HeaderMap, existing: set[str], mx: bool, resolver):
        self.headers = headers
        self.existing = existing
        self.seen = SeenAddresses()  # every address kept so far -> its row, 20 bytes each
        self.mx = mx
        self.resolver = resolver
        self.domain_has_mx: dict[str, bool] = {}
        self.max_cell = settings.IMPORT_MAX_CELL_CHARS
        self.rows_read = 0

    def check(self, chunk: reader.Chunk, report: ImportReport, rejected: RejectedRows) -> tuple:
        """Count and report the chunk's rows; return the accepted ones: emails, first and last names, data."""
        h, frame = self.headers, chunk.frame
        self.rows_read += len(frame)
        result = validate_emails(frame[h.email])
        reasons = result.error.to_numpy(dtype=object, copy=True)  # None for a row that is still accepted
        blank = self._blank_rows(frame, reasons)
        first, last = _names(frame, h.first_name), _names(frame, h.last_name)
        _reject_long(reasons, first, NAME_MAX_LENGTH, f"The first name is longer than {NAME_MAX_LENGTH} characters.")
        _reject_long(reasons, last, NAME_MAX_LENGTH, f"The last name is longer than {NAME_MAX_LENGTH} characters.")
        data = [(tag, frame[column].to_numpy(dtype=object)) for column, tag in h.data]
        for (column, _), (_, values) in zip(h.data, data):
            _reject_long(reasons, values, self.max_cell,
                         f"The value in column '{h.original[column]}' is longer than {self.max_cell:,} characters.")
        start = int(frame.index[0])
        for row_number, values in chunk.ragged.items():
            reasons[row_number - start] = (
                f"The row has {len(values)} values but the header has {len(h.original)} columns.")
        valid = pd.isna(reasons) & ~blank
        emails = np.array(list(map(str.lower, result.normalized.to_numpy(dtype=object)[valid])), dtype=object)
        if self.mx:
            emails, valid = self._reject_no_mx(emails, valid, reasons)
        report.rows += len(frame) - int(blank.sum())
        report.invalid += int(np.count_nonzero(~valid & ~blank))

        keep = self._dedup(emails, frame.index.to_numpy()[valid], reasons, valid, report)
        accepted = np.flatnonzero(valid)[keep]
        refused = np.flatnonzero(pd.notna(reasons) & ~blank)
        for i, values in zip(refused.tolist(), frame.iloc[refused].to_numpy().tolist()):
            row_number = start + i
            rejected.add(row_number, reasons[i], chunk.ragged.get(row_number, values))
        return emails[keep], first[accepted], last[accepted], [(tag, values[accepted]) for tag, values in data]

    def _blank_rows(self, frame: pd.DataFrame, reasons: np.ndarray) -> np.ndarray:
        """Rows with no value at all (blank lines, empty spreadsheet rows) are skipped, not reported."""
        blank = reasons == MISSING_EMAIL
        if blank.any():
            candidates = frame[blank]
            blank[blank] = candidates.apply(lambda column: column.str.strip().eq("")).all(axis=1).to_numpy()
        return blank

    def _reject_no_mx(self, emails, valid, reasons):
        domains = np.array([e.rpartition("@")[2] for e in emails], dtype=object)
        unknown = set(domains) - self.domain_has_mx.keys()
        if unknown:
            self.domain_has_mx.update(check_mx(sorted(unknown), resolver=self.resolver))
        ok = np.array([self.domain_has_mx[d] for d in domains], dtype=bool)
        failing = np.flatnonzero(valid)[~ok]
        for i, domain in zip(failing, domains[~ok]):
            reasons[i] = f"The domain {domain} does not accept email (it has no MX record)."
        valid = valid.copy()
        valid[failing] = False
        return emails[ok], valid

    def _dedup(self, emails, row_numbers, reasons, valid, report) -> np.ndarray:
        """Mark duplicates of an earlier row and addresses already in the campaign; return the rows to keep."""
        digests = address_digests(emails)
        earlier = self.seen.first_rows(digests)  # the row of an earlier chunk with the address, or -1
        duplicate = pd.Series(emails, dtype=object).duplicated().to_numpy(copy=True)
        in_chunk = duplicate & (earlier < 0)  # repeats whose first row is in this chunk
        duplicate |= earlier >= 0
        fresh = ~duplicate
        self.seen.add(digests[fresh], row_numbers[fresh])
        present = np.zeros(len(emails), bool)
        if self.existing:
            present = fresh & np.fromiter((e in self.existing for e in emails), bool, len(emails))
        first_row = earlier
        if in_chunk.any():
            first_in_chunk = dict(zip(emails[fresh].tolist(), row_numbers[fresh].tolist()))
            first_row = earlier.copy()
            first_row[in_chunk] = [first_in_chunk[e] for e in emails[in_chunk]]
        positions = np.flatnonzero(valid)
        for i, row in zip(positions[duplicate].tolist(), first_row[duplicate].tolist()):
            reasons[i] = f"Duplicate of row {row} (the same address)."
        reasons[positions[present]] = "Already in this campaign."
        report.duplicates_in_file += int(np.count_nonzero(duplicate))
        report.already_present += int(np.count_nonzero(present))
        return fresh & ~present


def address_digests(emails: np.ndarray) -> np.ndarray:
    """A 128-bit BLAKE2b digest of each address, as rows of two uint64: (the sort key, the check).

    Two different addresses share a digest with a probability of about n² / 2¹²⁹ (1e-25 for ten
    million addresses): the digest stands for the address.
    """
    joined = b"".join(blake2b(e.encode(), digest_size=16).digest() for e in emails)
    return np.frombuffer(joined, dtype="<u8").reshape(-1, 2)


class SeenAddresses:
    """The addresses of the rows kept so far, as digests with their row numbers: 20 bytes an address in
    numpy arrays (a dict of the addresses took ~150 bytes each: 1.6 GB at ten million rows).

    Sorted runs, merged like a log-structured tree (a run is merged into the one before it while that one
    is not larger) up to MAX_RUN digests, so that a merge never needs more than a few tens of MB at once;
    a ten-million-row file keeps about a dozen runs to search.
    """

    MAX_RUN = 1 << 21

    def __init__(self):
        self.runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (keys, checks, rows), sorted by key

    def __len__(self):
        return sum(len(keys) for keys, _, _ in self.runs)

    def first_rows(self, digests: np.ndarray) -> np.ndarray:
        """The row number stored for each digest, or -1."""
        found = np.full(len(digests), -1, dtype=np.int64)
        keys, checks = digests[:, 0], digests[:, 1]
        for run_keys, run_checks, run_rows in self.runs:
            left = np.searchsorted(run_keys, keys)
            at = np.minimum(left, len(run_keys) - 1)
            hit = run_keys[at] == keys
            same = hit & (run_checks[at] == checks)
            found[same] = run_rows[at[same]]
            for i in np.flatnonzero(hit & ~same).tolist():  # two digests with the same key (rare)
                j = left[i] + 1
                while j < len(run_keys) and run_keys[j] == keys[i]:
                    if run_checks[j] == checks[i]:
                        found[i] = run_rows[j]
                    j += 1
        return found

    def add(self, digests: np.ndarray, rows: np.ndarray) -> None:
        if not len(digests):
            return
        order = np.argsort(digests[:, 0], kind="stable")
        run = (digests[order, 0], digests[order, 1], rows[order].astype(np.uint32))
        while self.runs and len(self.runs[-1][0]) <= len(run[0]) <= self.MAX_RUN - len(self.runs[-1][0]):
            previous = self.runs.pop()
            keys = np.concatenate((previous[0], run[0]))
            order = np.argsort(keys, kind="stable")  # two sorted runs: a linear merge
            run = (keys[order], *(np.concatenate((a, b))[order] for a, b in zip(previous[1:], run[1:])))
            del keys, order, previous
        self.runs.append(run)


def _reject_long(reasons: np.ndarray, values: np.ndarray, limit: int, reason: str) -> None:
    if len(values) and max(map(len, values)) > limit:
        reasons[np.fromiter(map(len, values), int, len(values)) > limit] = reason


def _names(frame: pd.DataFrame, column: int | None) -> np.ndarray:
    if column is None:
        return np.full(len(frame), "", dtype=object)
    return np.array(list(map(str.strip, frame[column].to_numpy(dtype=object))), dtype=object)


def _save_report(record, campaign_id, path, sheet, report: ImportReport, rejected: RejectedRows, stored: list):
    if record is None:
        record = RecipientImport(campaign_id=campaign_id, original_name=Path(path).name[:255], sheet=sheet or "")
    for name in ("imported", "duplicates_in_file", "already_present", "invalid", "suppressed", "merge_tags",
                 "new_merge_tags"):
        setattr(record, name, getattr(report, name))
    record.total_rows = record.rows_done = record.rows_estimated = report.rows
    record.status = RecipientImport.Status.SUCCEEDED
    record.error = ""
    record.finished_at = timezone.now()
    record.started_at = record.started_at or record.finished_at
    if rejected.count:
        rejected.file.flush()
        with open(rejected.path, "rb") as f:
            record.rejected_file.save(f"rejected-{Path(path).stem[:80]}.csv", File(f), save=False)
        stored.append(record.rejected_file.path)
    if record.pk is None:
        record.save()
    elif not RecipientImport.objects.filter(pk=record.pk, status=RecipientImport.Status.RUNNING).update(
            **{name: getattr(record, name) for name in REPORT_FIELDS}):
        raise ImportRefused(ALREADY_STARTED)  # marked failed meanwhile (a time limit): roll back
    return record


def mark_failed(recipient_import_id: int, message: str) -> bool:
    """Mark an unfinished import failed, or replace the reason a failed one gives; never touch a succeeded one."""
    return bool(RecipientImport.objects.filter(pk=recipient_import_id).exclude(
        status=RecipientImport.Status.SUCCEEDED).update(
        status=RecipientImport.Status.FAILED, error=message, finished_at=timezone.now()))


def _no_progress(done: int, estimated: int) -> None:
    pass
