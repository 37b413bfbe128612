from __future__ import annotations

import pytest

from drive.domain.errors import ConfigurationError
from drive.settings import Settings


def test_embedded_default_needs_only_a_token() -> None:
    settings = Settings.from_env({"AUTH_BEARER_TOKEN": "t"})
    assert settings.storage == "fs"
    assert settings.backends == ("fs",)
    assert settings.database_url == "sqlite:///./data/metadata.db"
    assert settings.fs_base_path == "./data/blobs"
    assert settings.tokens == {"t": "read-write"}


def test_no_token_names_the_variable() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({})
    assert "AUTH_BEARER_TOKEN" in info.value.message


def test_scoped_tokens() -> None:
    settings = Settings.from_env({"AUTH_TOKENS": "read:r1, read-write:w1", "AUTH_BEARER_TOKEN": "main"})
    assert settings.tokens == {"r1": "read", "w1": "read-write", "main": "read-write"}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"STORAGE": "tape"}, "STORAGE"),
        ({"STORAGE": "s3"}, "S3_BUCKET"),
        ({"STORAGE": "ftp"}, "FTP_HOST"),
        ({"FTP_HOST": "h", "FTP_PORT": "x"}, "FTP_PORT"),
        ({"S3_BUCKET": "b", "S3_FORCE_PATH_STYLE": "maybe"}, "S3_FORCE_PATH_STYLE"),
        ({"S3_BUCKET": "b", "S3_ACCESS_KEY": "only-one"}, "S3_ACCESS_KEY"),
        ({"AUTH_TOKENS": "admin:x"}, "AUTH_TOKENS"),
        ({"DRIVE_BACKENDS": "fs,tape"}, "DRIVE_BACKENDS"),
        ({"MAX_BLOB_SIZE": "-1"}, "MAX_BLOB_SIZE"),
    ],
)
def test_bad_settings_name_the_variable_not_the_value(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({"AUTH_BEARER_TOKEN": "secret-token", **env})
    assert named in info.value.message
    assert "secret-token" not in info.value.message
    assert "\n" not in info.value.message


def test_backends_enabled_by_their_settings() -> None:
    settings = Settings.from_env(
        {"AUTH_BEARER_TOKEN": "t", "STORAGE": "db", "S3_BUCKET": "b", "FTP_HOST": "h", "FS_BASE_PATH": "/x"}
    )
    assert settings.backends == ("fs", "db", "s3", "ftp")
    assert settings.storage == "db"
