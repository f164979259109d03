"""The seeded chaos run (issue 21): real workers, beat, PostgreSQL, Redis and local providers, with
accounts, campaigns, faults, staff actions, crashes and provider events drawn from one seed, then the
ledger's invariants checked against what the servers recorded. Test-only: never imported by campaigns/.

scenario.py draws a scenario from a seed (plain data, printed with a failing seed); stack.py runs the
servers and processes and injects the faults; invariants.py checks a finished run; run.py plays one
seed; test_chaos.py holds the CI seeds and the `make chaos` entry; __main__.py is `make chaos`.
See docs/delivery-guarantees.md, "The chaos run".
"""
