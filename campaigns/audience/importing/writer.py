"""Write accepted rows with PostgreSQL COPY (psycopg 3), inside the caller's transaction.

Rows are formatted as COPY text in bulk: one `str.format` per row, with escaping done per column
and only when a column needs it, because that is where an import of a million rows spends its time.
"""

from __future__ import annotations

import queue
import re
import threading
from json.encoder import encode_basestring


from campaigns.audience.importing.libraries import np
from campaigns.models import Recipient, Suppression

RECIPIENT_TABLE = Recipient._meta.db_table
SUPPRESSION_TABLE = Suppression._meta.db_table
STAGING_TABLE = "recipient_import_rows"
COPY_SPECIAL = re.compile(r"[\\\t\n\r]")


def copy_escape(values: np.ndarray) -> np.ndarray:
    """COPY text format: backslash, tab, newline and carriage return are escaped with a backslash."""
    if COPY_SPECIAL.search("\x1f".join(values)) is None:
        return values
    return np.array([
        v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        if COPY_SPECIAL.search(v) else v
        for v in values
    ], dtype=object)


def json_strings(values: np.ndarray) -> list[str]:
    """Each value as a JSON string literal, ready for COPY text (its backslashes doubled)."""
    quoted = list(map(encode_basestring, values))  # C-accelerated; as fast as adding the quotes
    if "\\" in "".join(quoted):
        quoted = [q.replace("\\", "\\\\") for q in quoted]
    return quoted


def copy_text(prefix: str, email: np.ndarray, first_name: np.ndarray, last_name: np.ndarray,
              data: list[tuple[str, np.ndarray]]) -> str:
    """Lines of `prefix email first_name last_name data` for COPY; `data` pairs a merge tag with its values."""
    keys = [encode_basestring(tag).replace("%", "%%") for tag, _ in data]
    line = prefix.replace("%", "%%") + "%s\t%s\t%s\t{" + ",".join(f"{key}:%s" for key in keys) + "}\n"
    columns = [email, copy_escape(first_name), copy_escape(last_name), *(json_strings(v) for _, v in data)]
    return "".join(map(line.__mod__, zip(*columns)))


class RecipientCopy:
    """COPY straight into the recipient table when the campaign has no recipients yet; otherwise COPY into
    a temporary table and merge with INSERT ... ON CONFLICT DO NOTHING, so that rows already present are
    left alone. `inserted` and `conflicts` are known after the block.

    Each chunk is one COPY statement run by a thread of its own, so that PostgreSQL stores a chunk (and
    checks its foreign keys, made immediate for that reason) while the next chunk is being prepared.
    The caller must not use the connection inside the block.
    """

    def __init__(self, cursor, campaign_id: int, direct: bool):
        self.cursor = cursor
        self.campaign_id = campaign_id
        self.direct = direct
        self.prefix = f"{campaign_id}\t" if direct else ""
        self.rows = 0
        self.inserted = 0
        self.conflicts = 0
        self.error: BaseException | None = None

    def __enter__(self):
        self.cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        if self.direct:
            self.statement = f"COPY {RECIPIENT_TABLE} (campaign_id, email, first_name, last_name, data) FROM STDIN"
        else:
            self.cursor.execute(
                f"CREATE TEMP TABLE {STAGING_TABLE} (email varchar(320) NOT NULL, first_name varchar(200) NOT NULL,"
                f" last_name varchar(200) NOT NULL, data jsonb NOT NULL) ON COMMIT DROP"
            )
            self.statement = f"COPY {STAGING_TABLE} (email, first_name, last_name, data) FROM STDIN"
        self.blocks = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._copy_blocks, name="recipient-copy", daemon=True)
        self.thread.start()
        return self

    def write_rows(self, email, first_name, last_name, data) -> None:
        if self.error is not None:
            raise self.error
        if len(email):
            self.blocks.put(copy_text(self.prefix, email, first_name, last_name, data))
            self.rows += len(email)

    def _copy_blocks(self) -> None:
        while (text := self.blocks.get()) is not None:
            if self.error is None:
                try:
                    with self.cursor.copy(self.statement) as copy:
                        copy.write(text)
                except BaseException as error:  # handed to the caller's thread
                    self.error = error

    def __exit__(self, exc_type, exc, tb):
        self.blocks.put(None)
        self.thread.join()
        if exc_type is not None:
            return False
        if self.error is not None:
            raise self.error
        if self.direct:
            self.inserted = self.rows
        else:
            self.cursor.execute(
                f"INSERT INTO {RECIPIENT_TABLE} (campaign_id, email, first_name, last_name, data) "
                f"SELECT %s, email, first_name, last_name, data FROM {STAGING_TABLE} "
                f"ON CONFLICT (campaign_id, email) DO NOTHING",
                [self.campaign_id],
            )
            self.inserted = self.cursor.rowcount
        self.conflicts = self.rows - self.inserted
        return False


def existing_emails(cursor, campaign_id: int) -> set[str]:
    cursor.execute(f"SELECT email FROM {RECIPIENT_TABLE} WHERE campaign_id = %s", [campaign_id])
    return {email for (email,) in cursor.fetchall()}


def last_recipient_id(cursor, campaign_id: int) -> int:
    cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {RECIPIENT_TABLE} WHERE campaign_id = %s", [campaign_id])
    return cursor.fetchone()[0]


def count_suppressed(cursor, campaign_id: int, after_id: int) -> int:
    """Suppressed addresses among the recipients added after `after_id` (ids only grow), in one query."""
    cursor.execute(
        f"SELECT count(*) FROM {SUPPRESSION_TABLE} s WHERE EXISTS (SELECT 1 FROM {RECIPIENT_TABLE} r "
        f"WHERE r.campaign_id = %s AND r.email = s.email AND r.id > %s)",
        [campaign_id, after_id],
    )
    return cursor.fetchone()[0]
