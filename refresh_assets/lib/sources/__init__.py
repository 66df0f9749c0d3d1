"""Source documents: where cities and CalPERS publish them, how they are found on a listing
page, fetched politely, and what operators are told to enter.

Modules: `registry` (the sources YAML), `discovery` (listing page -> documents),
`fetching` (polite HTTP), `breaker` (per-source circuit breaker), `store` (ops tables),
`checking` (one check of many sources), `notifications` (operator emails).
"""
