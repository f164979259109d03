"""Experiments on a campaign's content: A/B tests (ab_tests) with two to four variants, a test share
and a winner that goes to the rest.

May import: the models, states, exceptions and campaigns.sending.dispatch (to queue the winner's batches). The
sending pipeline imports this package, so nothing here imports the pipeline or routing.
"""
