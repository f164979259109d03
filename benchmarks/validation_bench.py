"""Time validate_emails on a realistic recipient list against email_validator called per address.

The baseline (the library once per address, check_deliverability=False) is
timed on a sample and extrapolated to the full row count, because running it
on a million rows takes about half a minute.

    PYTHONPATH=. .venv/bin/python benchmarks/validation_bench.py --rows 1000000
"""

import argparse
import random
import statistics
import string
import time

import pandas as pd
from email_validator import EmailNotValidError, validate_email

from campaigns.audience.importing.validation import validate_emails

FREEMAIL = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "hotmail.co.uk", "icloud.com", "web.de",
            "gmx.de", "orange.fr", "example.com"]
ROLES = ["info", "sales", "support", "marketing", "Info"]
INVALID = ["{}{}", "{}@@{}", "{}@{}.", "{}..x@{}", "{} x@{}", "{}@{}.test", "{}@localhost", "{}@{}@x.com"]


def realistic_emails(rows: int, seed: int = 42) -> pd.Series:
    """Mostly plain valid addresses; ~2% invalid, some padded, upper-case, role or Unicode ones."""
    rng = random.Random(seed)
    companies = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 10))) for _ in range(5000)]
    names = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(3000)]
    emails = []
    for _ in range(rows):
        first, last = rng.choice(names), rng.choice(names)
        local = rng.choice([f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}{rng.randint(1, 999)}",
                            f"{first}_{last}", f"{first}+{last}"])
        company = rng.choice(companies)
        domain = rng.choice(FREEMAIL) if rng.random() < 0.6 else rng.choice([f"{company}.com", f"{company}-group.co.uk",
                                                                               f"mail.{company}.org", f"{company}.io"])
        roll = rng.random()
        if roll < 0.02:
            emails.append(rng.choice(INVALID).format(local, domain))
            continue
        if roll < 0.05:
            local = rng.choice(ROLES)
        elif roll < 0.08:
            local, domain = local.capitalize(), domain.capitalize()
        elif roll < 0.09:
            local = local + rng.choice(["é", "ü", "ø"])
        address = f"{local}@{domain}"
        emails.append(f" {address} " if rng.random() < 0.02 else address)
    return pd.Series(emails)


def validate_one_by_one(emails) -> None:
    for email in emails:
        try:
            validate_email(email.strip(), check_deliverability=False)
        except EmailNotValidError:
            pass


def median_seconds(run, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-sample", type=int, default=100_000)
    args = parser.parse_args()

    emails = realistic_emails(args.rows)
    result = validate_emails(emails)
    print(f"rows={args.rows} invalid={int(result.error.notna().sum())} "
          f"fast_path_share={result.fast_path_rows / args.rows:.3f}")

    fast = median_seconds(lambda: validate_emails(emails))
    sample = emails.sample(n=min(args.baseline_sample, args.rows), random_state=1).tolist()
    baseline = median_seconds(lambda: validate_one_by_one(sample)) * args.rows / len(sample)

    print(f"validate_emails: {fast:.3f} s ({args.rows / fast:,.0f} rows/s), median of 3")
    print(f"library per address: {baseline:.3f} s ({args.rows / baseline:,.0f} rows/s), "
          f"median of 3 on a {len(sample):,} sample, extrapolated to {args.rows:,} rows")
    print(f"speedup_vs_library={baseline / fast:.1f}")


if __name__ == "__main__":
    main()
