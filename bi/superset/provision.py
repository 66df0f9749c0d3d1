"""Run by Superset's own Python (`refresh-assets bi superset` runs it in Superset's virtual
environment): `python provision.py BUNDLE.zip USERNAME`.

1. The admin user USERNAME gets the password in SUPERSET_ADMIN_PASSWORD: created if missing,
   its password set if not (so the password in force is always the one the command names).
2. The bundle is imported with everything in it overwritten. `superset import-dashboards`
   overwrites the dashboard only: the database, datasets and charts would keep what their
   first import gave them, so an edited chart, or a new port or password of the warehouse,
   would never reach Superset. Here each of Superset's importers overwrites its own kind.

Exit status 1 with one line on stderr if anything fails.
"""

import os
import sys
from zipfile import ZipFile


def main(bundle_path: str, username: str) -> int:
    from superset.app import create_app

    with create_app().app_context():
        from superset import security_manager
        from superset.commands.chart.importers.v1 import ImportChartsCommand
        from superset.commands.dashboard.importers.v1 import ImportDashboardsCommand
        from superset.commands.database.importers.v1 import ImportDatabasesCommand
        from superset.commands.dataset.importers.v1 import ImportDatasetsCommand
        from superset.commands.exceptions import CommandInvalidError
        from superset.commands.importers.v1.utils import get_contents_from_bundle
        from superset.extensions import db
        from superset.utils.core import override_user

        password = os.environ["SUPERSET_ADMIN_PASSWORD"]
        user = security_manager.find_user(username=username)
        if user is None:
            user = security_manager.add_user(
                username, "Superset", "Admin", f"{username}@localhost",
                security_manager.find_role(security_manager.auth_role_admin), password=password)
            if not user:
                print(f"provision: could not create the user {username}", file=sys.stderr)
                return 1
        else:
            security_manager.reset_password(user.id, password)
        db.session.commit()

        with ZipFile(bundle_path) as bundle:
            contents = get_contents_from_bundle(bundle)
        with override_user(user):
            for command in (ImportDatabasesCommand, ImportDatasetsCommand, ImportChartsCommand,
                            ImportDashboardsCommand):
                try:
                    command(contents, overwrite=True).run()
                except CommandInvalidError as exc:
                    print(f"provision: {command.__name__}: {exc.normalized_messages()}",
                          file=sys.stderr)
                    return 1
                except Exception as exc:  # noqa: BLE001 - one line, with its cause
                    cause = exc.__cause__ or exc
                    print(f"provision: {command.__name__}: {type(cause).__name__}: {cause}",
                          file=sys.stderr)
                    return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
