"""Where a SendGrid sender worker's CPU goes, step by step (issue 26 item 1): a campaign's batches sent
in this process by `pipeline.send_batch`, exactly as a sender pool process runs them, under cProfile,
against the fake SendGrid API; prints each step's CPU per email and its share of the whole.

    .venv/bin/python scripts/devstack.py exec .venv/bin/python benchmarks/send_profile.py [--recipients 20000]

The steps are cumulative times of the functions named in STEPS (cProfile's own overhead inflates
Python-heavy steps more than C-heavy ones, so read shares, not absolute µs; the run also prints the
process CPU per email without the profiler, same batches size, for scale). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Per-step timers (process CPU, no profiler): (label, module, attribute path). Each wrapped function's
# inclusive CPU per email; nested steps are indented under the step that calls them.
TIMED = [
    ("send_batch (all)", "campaigns.sending.pipeline", "send_batch"),
    ("  build_batch: contexts + signed links", "campaigns.sending.pipeline", "build_batch"),
    ("    signed links: unsubscribe_url", "campaigns.message.signed_links", "unsubscribe_url"),
    ("    signed links: web_url", "campaigns.message.signed_links", "web_url"),
    ("  build_payload: the request body", "campaigns.sending.providers.sendgrid", "SendGridProvider.build_payload"),
    ("    substitution values (per slot)", "campaigns.message.rendering", "CompiledCampaign._values"),
    ("  deliver: pacer + call-began + POST", "campaigns.sending.providers.sendgrid", "SendGridProvider.deliver"),
    ("    rate limit (Pacer.take)", "campaigns.sending.ratelimit", "Pacer.take"),
    ("    call-began mark (ledger)", "campaigns.sending.ledger", "BatchLedger.call_began"),
    ("  parse_response", "campaigns.sending.providers.sendgrid", "SendGridProvider.parse_response"),
    ("  ledger.record: results write", "campaigns.sending.ledger", "BatchLedger.record"),
    ("  finalize_if_done", "campaigns.sending.pipeline", "finalize_if_done"),
]


def install_timers():
    """Wrap each TIMED function with a process-CPU timer; returns label -> [seconds]."""
    import functools
    import importlib

    totals = {}
    for label, module_name, path in TIMED:
        owner = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original = getattr(owner, name)
        cell = totals[label] = [0.0]

        def timed(*args, _original=original, _cell=cell, **kwargs):
            began = time.process_time()
            try:
                return _original(*args, **kwargs)
            finally:
                _cell[0] += time.process_time() - began

        setattr(owner, name, functools.wraps(original)(timed))
    return totals


# (label, module path suffix, function name): cumulative CPU of each, per email, under cProfile.
STEPS = [
    ("send_batch (all)", "campaigns/sending/pipeline.py", "send_batch"),
    ("  build_batch: contexts + signed links", "campaigns/sending/pipeline.py", "build_batch"),
    ("    signed links (unsubscribe + web)", "campaigns/message/signed_links.py", "unsubscribe_url"),
    ("    signed links: web_url", "campaigns/message/signed_links.py", "web_url"),
    ("  build_payload: the request body", "campaigns/sending/providers/sendgrid.py", "build_payload"),
    ("    substitutions (values per slot)", "campaigns/message/rendering.py", "_values"),
    ("  deliver: pacer + call-began + POST", "campaigns/sending/providers/sendgrid.py", "deliver"),
    ("    json.dumps of the body", "json/__init__.py", "dumps"),
    ("    call-began mark (ledger)", "campaigns/sending/ledger.py", "call_began"),
    ("    rate limit (Pacer.take)", "campaigns/sending/ratelimit.py", "take"),
    ("    HTTP request (urllib)", "urllib/request.py", "open"),
    ("  parse_response", "campaigns/sending/providers/sendgrid.py", "parse_response"),
    ("  ledger.record: results write", "campaigns/sending/ledger.py", "record"),
    ("  finalize_if_done", "campaigns/sending/pipeline.py", "finalize_if_done"),
    ("  dispatch_batches (next batch task)", "campaigns/sending/dispatch.py", "dispatch_batches"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--top", type=int, default=25, help="also print the top N functions by own time")
    args = parser.parse_args(argv)

    from benchmarks import send_bench

    os.environ.update(send_bench.PRODUCTION_ENV)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")
    os.environ["SENDGRID_API_KEY"] = send_bench.API_KEY
    os.environ["SENDGRID_RATE_LIMIT_PER_SEC"] = send_bench.UNCAPPED_RATE
    import django
    django.setup()
    import logging

    from django.conf import settings
    from django.core.management import call_command

    from campaigns import services
    from campaigns.sending import pipeline

    logging.getLogger("campaigns").setLevel(logging.WARNING)
    call_command("migrate", verbosity=0)
    send_bench.BENCH_DIR.mkdir(parents=True, exist_ok=True)
    campaign_id = send_bench.create_campaign(args.recipients, args.batch_size)
    services.send_now(campaign_id)  # its start task goes to Redis; no worker takes it: started here instead
    pipeline.start_campaign(campaign_id)
    batches = -(-args.recipients // args.batch_size)
    half = batches // 2
    with send_bench.fake_sendgrid(send_bench.BENCH_DIR / "profile.jsonl") as (server, port):
        settings.SENDGRID_API_HOST = f"http://127.0.0.1:{port}"
        # The first half with per-step timers only, for the real CPU per email of this process and its steps.
        totals = install_timers()
        started = time.process_time()
        for number in range(half):
            pipeline.send_batch(campaign_id, number)
        plain = time.process_time() - started
        plain_us = plain / (half * args.batch_size) * 1e6
        print(f"== per-step timers, {half * args.batch_size:,} emails: this process {plain_us:.0f} µs CPU per email")
        for label, (seconds,) in totals.items():
            print(f"   {label:<42} {seconds / (half * args.batch_size) * 1e6:7.1f} µs/email  {seconds / plain:6.1%}")
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for number in range(half, batches):
            pipeline.send_batch(campaign_id, number)
        profiler.disable()
        profiled = (batches - half) * args.batch_size
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    print(f"== {args.recipients:,} recipients, batches of {args.batch_size}: this process {plain_us:.0f} µs CPU per email "
          f"without the profiler; {total / profiled * 1e6:.0f} µs per email under it. Steps (cumulative, under cProfile):")
    for label, path, name in STEPS:
        seconds = sum(ct for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items()
                      if func == name and file.endswith(path))
        print(f"   {label:<42} {seconds / profiled * 1e6:7.1f} µs/email  {seconds / total:6.1%}")
    print("== send_batch's callees (cumulative, under cProfile)")
    stats.sort_stats("cumulative").print_callees("pipeline.py.*\\(send_batch\\)")
    print(f"== top {args.top} by own time")
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
