"""How the link scan of campaigns/message/click_tracking.py grows with the HTML (issue 22, item 5).

Scans pathological HTML (`<a ` repeated, no `>`) and an ordinary newsletter repeated to the same size,
each at 1x, 2x, 4x and 8x a base size, and prints the time of each and the ratio to the size before it:
about 2.0 per doubling is linear (a quadratic scan shows 4.0). No servers needed:

    DEBUG=True PYTHONPATH=. .venv/bin/python benchmarks/link_scan_bench.py [--base 100000]
"""

import argparse
import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailer_project.settings")
os.environ.setdefault("DEBUG", "True")

import django  # noqa: E402

django.setup()

from campaigns.message.click_tracking import campaign_links  # noqa: E402

NEWSLETTER = '<p>News</p><a class="btn" href="https://acme.test/sale?a=1&amp;b=2">Sale</a> <img src="x.png"> '


def best_of(html, runs=3):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        campaign_links(html)
        times.append(time.perf_counter() - started)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=100_000, help="characters at 1x")
    base = parser.parse_args().base
    for name, unit in (("pathological '<a '", "<a "), ("newsletter", NEWSLETTER)):
        previous = None
        for factor in (1, 2, 4, 8):
            html = unit * (base * factor // len(unit))
            seconds = best_of(html)
            ratio = f" ratio_vs_half={seconds / previous:.2f}" if previous else ""
            print(f"{name}: {len(html):,} chars in {seconds * 1000:.1f} ms{ratio}")
            previous = seconds


if __name__ == "__main__":
    main()
