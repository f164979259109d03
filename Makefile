# `make run` starts the whole stack on this machine; `make test` runs the whole suite.
# Both install what is missing first (a virtualenv in .venv, Debian's redis-server).

PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test demo chaos codemirror clean-var bench-admin bench-send bench-import bench-webhook bench-bounces bench-api bench-scale bench-send-pgbouncer

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --upgrade pip
	$(VENV_PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## Start PostgreSQL and Redis under var/ (unless DATABASE_URL / REDIS_URL are set), migrate, then
## web, both Celery workers, beat, Flower and the mail sink. Ctrl-C stops everything.
run: $(STAMP)
	$(VENV_PY) scripts/devstack.py run

## The whole suite against throwaway PostgreSQL and Redis. Pass pytest arguments with ARGS="...".
test: $(STAMP)
	sh scripts/ensure_chromium.sh
	sh scripts/ensure_dovecot.sh
	sh scripts/ensure_pgbouncer.sh
	$(VENV_PY) scripts/devstack.py test $(ARGS)

## The seeded chaos run (tests/chaos): real workers, beat and local providers with faults, staff actions and
## crashes drawn from each seed, then the ledger's invariants. ARGS="--seeds 50", "--seed N" replays one.
chaos: $(STAMP)
	$(VENV_PY) scripts/devstack.py exec $(VENV_PY) -m tests.chaos $(ARGS)

## The admin at scale: page times on an almost empty database, then with 1M delivery logs (ratios).
bench-admin: $(STAMP)
	$(VENV_PY) scripts/devstack.py exec $(VENV_PY) benchmarks/admin_bench.py

## The API at 1M delivery logs (stats/, delivery-logs/, CSV) against the admin's pages, and the webhook dispatcher.
bench-api: $(STAMP)
	$(VENV_PY) scripts/devstack.py exec $(VENV_PY) benchmarks/api_bench.py $(ARGS)

## One whole campaign on throwaway servers: a starter template, sample_recipients.csv, sent now.
demo: $(STAMP)
	$(VENV_PY) scripts/devstack.py demo

## Sending benchmark against throwaway PostgreSQL and Redis, e.g. ARGS="--recipients 200000 --provider sendgrid".
## ARGS="--provider smtp --sink postfix" sends to Postfix's smtp-sink (fetched into var/postfix/ with apt-get download
## when missing, never installed); ARGS="--workers 1,2,4 --rate-limit 1500" runs separate sender workers.
bench-send: $(STAMP)
	$(VENV_PY) scripts/devstack.py exec $(VENV_PY) benchmarks/send_bench.py $(ARGS)

## bench-send with every database connection through PgBouncer in transaction mode (Debian's pgbouncer with
## pgbouncer/pgbouncer.ini, the pooling settings of docker-compose.pgbouncer.yml), e.g. ARGS="--recipients 200000".
bench-send-pgbouncer: $(STAMP)
	sh scripts/ensure_pgbouncer.sh
	$(VENV_PY) scripts/devstack.py exec $(VENV_PY) benchmarks/through_pgbouncer.py $(VENV_PY) benchmarks/send_bench.py $(ARGS)

## Import benchmark: command line and admin upload → succeeded (real worker) vs psql \copy; defaults
## 1M CSV rows, 100k XLSX rows and a 1M×10 XLSX (peak memory), e.g. ARGS="--rows 200000 --wide-xlsx 0".
bench-import: $(STAMP)
	$(VENV_PY) scripts/devstack.py exec $(VENV_PY) benchmarks/import_bench.py $(ARGS)

## One campaign of N recipients end to end (issue 26 item 4): import vs psql \copy, preflight, send now to the fake
## SendGrid API, the admin pages while it sends, follow-up page, exports, disk per recipient. Not part of `make test`.
## e.g. ARGS="--recipients 10000000" (hours) or ARGS="--recipients 200000" (minutes).
bench-scale: $(STAMP)
	$(VENV_PY) scripts/devstack.py exec $(VENV_PY) benchmarks/scale_bench.py $(ARGS)

## Signed SendGrid webhook batches against 100k delivery logs (events per second).
bench-webhook: $(STAMP)
	$(VENV_PY) scripts/devstack.py exec $(VENV_PY) benchmarks/webhook_bench.py $(ARGS)

## The bounce mailbox pollers on a mailbox of 10,000 bounces in a throwaway Dovecot (messages per second).
bench-bounces: $(STAMP)
	sh scripts/ensure_dovecot.sh
	$(VENV_PY) scripts/devstack.py exec $(VENV_PY) benchmarks/bounce_poll_bench.py $(ARGS)

## Rebuild the campaign form's HTML editor (CodeMirror 6) from frontend/codemirror/ (package-lock.json, npm ci)
## into campaigns/static/campaigns/vendor/codemirror/, which is committed: run, test and the image need no npm.
codemirror:
	cd frontend/codemirror && npm ci --no-audit --no-fund && npm run build && node licenses.js

## Remove the development data (database, Redis, captured mail).
clean-var:
	rm -rf var/
