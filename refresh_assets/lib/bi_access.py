"""A read-only role for BI tools: SELECT on the `marts` schema and nothing else.

Granted by `refresh-assets bi grant` rather than by a migration because its password comes
from the environment (REFRESH_BI_PASSWORD) at the operator's hand. Safe to run again: it
updates the password and re-applies the grants.

- `marts`: USAGE, SELECT on every table and view, and by default privileges on those the
  project's user creates later (dbt rebuilds a table by creating a new one).
- `raw`, `analytics`, `ops`, `staging`, `intermediate`: nothing (revoked, should an earlier
  grant have given any).
- The Dagster database: no CONNECT (revoked from PUBLIC too: by default every role may
  connect to every database).
- Its sessions end after IDLE_IN_TRANSACTION_TIMEOUT idle in a transaction: such a session
  keeps its read locks, which dbt's rebuild of a mart waits for (REFRESH_DBT_LOCK_TIMEOUT).
"""

from __future__ import annotations

import re

from psycopg2 import sql

from refresh_assets.lib.database import ServerAddress, connect

DEFAULT_ROLE = "bi_reader"
READABLE_SCHEMA = "marts"
CLOSED_SCHEMAS = ("raw", "analytics", "ops", "staging", "intermediate")
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
IDLE_IN_TRANSACTION_TIMEOUT = "5min"


class BiAccessError(ValueError):
    pass


def grant_bi_reader(address: ServerAddress, password: str, role: str = DEFAULT_ROLE) -> bool:
    """Creates or updates the read-only role. Returns True when the role was created."""
    if not ROLE_NAME.match(role):
        raise BiAccessError(f"--role {role!r}: a role name is lower-case letters, digits and _ "
                            "(up to 63), starting with a letter or _")
    if len(password) < 12:
        raise BiAccessError("REFRESH_BI_PASSWORD must be at least 12 characters")
    name = sql.Identifier(role)
    conn = connect(address)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("select 1 from pg_roles where rolname = %s", (role,))
            created = cur.fetchone() is None
            verb = "create" if created else "alter"
            cur.execute(sql.SQL(verb + " role {} login nosuperuser nocreatedb nocreaterole "
                                "noinherit password %s").format(name), (password,))
            cur.execute(sql.SQL("alter role {} set idle_in_transaction_session_timeout = %s")
                        .format(name), (IDLE_IN_TRANSACTION_TIMEOUT,))
            cur.execute(sql.SQL("grant connect on database {} to {}").format(
                sql.Identifier(address.warehouse_db), name))
            for schema in CLOSED_SCHEMAS:
                cur.execute(sql.SQL("revoke all on all tables in schema {0} from {1}; "
                                    "revoke all on schema {0} from {1}").format(
                    sql.Identifier(schema), name))
            marts = sql.Identifier(READABLE_SCHEMA)
            cur.execute(sql.SQL("grant usage on schema {0} to {1}; "
                                "grant select on all tables in schema {0} to {1}; "
                                "alter default privileges for role {2} in schema {0} "
                                "grant select on tables to {1}").format(
                marts, name, sql.Identifier(address.user)))
            cur.execute(sql.SQL("revoke connect on database {0} from public; "
                                "revoke connect on database {0} from {1}").format(
                sql.Identifier(address.dagster_db), name))
    finally:
        conn.close()
    return created
