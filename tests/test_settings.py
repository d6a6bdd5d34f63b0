"""Settings and database URLs: the environment, .env, normalisation and every bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from arquivo import Arquivo, ConfigurationError, MissingDependencyError, Settings
from arquivo.db.urls import hide_password, normalize_url
from arquivo.settings import DEFAULT_DATABASE_URL


def test_default_is_the_embedded_sqlite_file() -> None:
    settings = Settings.load()
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite:///./data/arquivo.db"
    assert settings.auto_migrate is True
    assert settings.sqlite_synchronous == "NORMAL"


def test_database_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///./meu_banco.db")
    monkeypatch.setenv("ARQUIVO_SQLITE_SYNCHRONOUS", "full")
    monkeypatch.setenv("ARQUIVO_AUTO_MIGRATE", "false")
    settings = Settings.load()
    assert settings.database_url == "sqlite:///./meu_banco.db"
    assert settings.sqlite_synchronous == "FULL"
    assert settings.auto_migrate is False


def test_database_url_comes_from_dot_env_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "DATABASE_URL=sqlite:///./custom/path/db.db\nCHROMA_DB_PATH=./data/chroma2\n"
    )
    settings = Settings.load()
    assert settings.database_url == "sqlite:///./custom/path/db.db"
    assert settings.chroma_db_path == "./data/chroma2"
    # The environment wins over .env.
    monkeypatch.setenv("DATABASE_URL", "sqlite:///./env.db")
    assert Settings.load().database_url == "sqlite:///./env.db"


def test_open_without_url_uses_settings_and_creates_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Arquivo.open() as store:
        assert store.dialect == "sqlite"
    assert (tmp_path / "data" / "arquivo.db").is_file()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ARQUIVO_AUTO_MIGRATE", "sometimes"),
        ("ARQUIVO_SQLITE_SYNCHRONOUS", "FAST"),
        ("ARQUIVO_POOL_SIZE", "0"),
        ("ARQUIVO_SQLITE_BUSY_TIMEOUT_MS", "soon"),
    ],
)
def test_bad_setting_values_give_one_configuration_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        Settings.load()
    assert variable.removeprefix("ARQUIVO_").lower() in caught.value.message
    assert caught.value.hint


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db:5432/agno", "postgresql+psycopg://u:p@db:5432/agno"),
        ("postgresql://u:p@db/agno", "postgresql+psycopg://u:p@db/agno"),
        ("postgresql+psycopg://u@db/agno", "postgresql+psycopg://u@db/agno"),
        ("sqlite:///./data/agents.db", "sqlite:///./data/agents.db"),
        ("sqlite+pysqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("sqlite://", "sqlite://"),
    ],
)
def test_urls_are_normalised(given: str, expected: str) -> None:
    assert normalize_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("data/arquivo.db", "not a URL"),
        ("mysql://u:p@h/db", "unsupported database"),
        ("mongodb://h/db", "unsupported database"),
        ("postgresql://u:p@host", "names no database"),
        ("sqlite://host/file.db", "no host"),
        ("postgresql://u:p@host:notaport/db", "not a valid URL"),
    ],
)
def test_bad_urls_give_a_configuration_error_with_a_hint(given: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        normalize_url(given)
    assert fragment in caught.value.message
    assert caught.value.hint


def test_passwords_are_hidden_when_displayed() -> None:
    shown = hide_password(normalize_url("postgresql://me:s3cret@db/agno"))
    assert "s3cret" not in shown
    assert "***" in shown


def test_missing_postgres_driver_names_the_extra(tmp_path: Path) -> None:
    # A real interpreter in which psycopg cannot be imported, as without the extra.
    script = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from arquivo import Arquivo, MissingDependencyError\n"
        "try:\n"
        "    Arquivo.open('postgresql://u@127.0.0.1/db')\n"
        "except MissingDependencyError as exc:\n"
        "    print('HINT', exc.hint)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout
    assert "pip install 'arquivo[postgres]'" in out
    assert issubclass(MissingDependencyError, ConfigurationError)
