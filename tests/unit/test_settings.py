import pytest

from refresh_assets.settings import DEFAULT_PG_PORT, PROJECT_DIR, SettingsError, load_settings


def test_defaults_use_the_embedded_server_in_the_project():
    settings = load_settings({})
    assert settings.embedded
    assert settings.pg_port == DEFAULT_PG_PORT
    assert settings.home == PROJECT_DIR / ".refresh"
    assert settings.postgres_dir == PROJECT_DIR / ".refresh" / "postgres"


def test_database_url_switches_off_the_embedded_server():
    settings = load_settings({"REFRESH_DATABASE_URL": "postgresql://u:p@db.example:5432/wh"})
    assert not settings.embedded


@pytest.mark.parametrize("value", ["abc", "0", "70000"])
def test_a_bad_port_names_the_variable(value):
    with pytest.raises(SettingsError, match="REFRESH_PG_PORT"):
        load_settings({"REFRESH_PG_PORT": value})
