import pytest

from refresh_assets.lib.database import ServerAddress


def test_from_url_reads_every_part():
    address = ServerAddress.from_url("postgresql://alice:s3cret@db.internal:6543/wh")
    assert (address.host, address.port, address.user, address.password) == (
        "db.internal", 6543, "alice", "s3cret")
    assert address.warehouse_db == "wh"
    assert address.dagster_db == "dagster"


def test_from_url_rejects_other_databases():
    with pytest.raises(ValueError, match="postgresql"):
        ServerAddress.from_url("mysql://u:p@h/db")


def test_urls_quote_the_password_and_can_hide_it():
    address = ServerAddress("127.0.0.1", 5432, "u", "p@ss/word")
    assert address.url() == "postgresql+psycopg2://u:p%40ss%2Fword@127.0.0.1:5432/warehouse"
    assert "p%40ss" not in address.url(hide_password=True)
    assert address.libpq_url("dagster").startswith("postgresql://u:")
    assert address.libpq_url("dagster").endswith("/dagster")


def test_environment_names_every_part_for_dagster_and_dbt():
    address = ServerAddress("h", 1234, "u", "pw", warehouse_db="w", dagster_db="d")
    assert address.environment() == {
        "REFRESH_DB_HOST": "h", "REFRESH_DB_PORT": "1234", "REFRESH_DB_USER": "u",
        "REFRESH_DB_PASSWORD": "pw", "REFRESH_DB_WAREHOUSE": "w", "REFRESH_DB_DAGSTER": "d"}
