"""Dagster wiring, one module per domain."""

import warnings

import dagster as dg

# The partitioned assets use single-run backfill policies on purpose (every city in one
# run); Dagster marks that parameter beta and would warn at every load of the code location.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy")
