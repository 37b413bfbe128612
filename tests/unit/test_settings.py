from __future__ import annotations

import pytest

from drive.domain.errors import ConfigurationError
from drive.settings import FtpSettings, S3Settings, Settings

TOKEN = "main-token-0123456789"
READ = "read-token-0123456789"
WRITE = "write-token-0123456789"


def test_embedded_default_needs_only_a_token() -> None:
    settings = Settings.from_env({"AUTH_BEARER_TOKEN": TOKEN})
    assert settings.storage == "fs"
    assert settings.backends == ("fs",)
    assert settings.database_url == "sqlite:///./data/metadata.db"
    assert settings.blob_database_url is None
    assert settings.fs_base_path == "./data/blobs"
    assert settings.s3 is None and settings.ftp is None
    assert settings.max_blob_size == 5 * 1024**3
    assert settings.max_json_blob_size == 32 * 1024**2
    assert settings.upload_lease_seconds == 60.0
    assert settings.recovery_interval_seconds == 300.0
    assert settings.log_level == "INFO"
    assert settings.tokens == {TOKEN: "read-write"}
    assert settings.max_header_bytes == 16 * 1024
    assert (settings.header_timeout_seconds, settings.keepalive_timeout_seconds) == (10.0, 5.0)
    assert settings.body_timeout_seconds == 30.0
    assert settings.max_connections == 1000


def test_backend_defaults_when_only_the_identifying_setting_is_given() -> None:
    settings = Settings.from_env({"AUTH_BEARER_TOKEN": TOKEN, "S3_BUCKET": "b", "FTP_HOST": "h"})
    assert settings.s3 == S3Settings(bucket="b")
    assert settings.s3.region == "us-east-1" and settings.s3.timeout == 30.0 and settings.s3.prefix == ""
    assert settings.s3.endpoint is None and settings.s3.force_path_style is False
    assert settings.ftp == FtpSettings(host="h")
    assert (settings.ftp.port, settings.ftp.user, settings.ftp.password) == (21, "anonymous", "")
    assert (settings.ftp.tls, settings.ftp.verify, settings.ftp.base_dir) == (False, True, "/")
    assert (settings.ftp.timeout, settings.ftp.pool_size, settings.ftp.ca_file) == (30.0, 4, None)


def test_values_are_read_and_converted() -> None:
    settings = Settings.from_env(
        {
            "AUTH_BEARER_TOKEN": TOKEN,
            "STORAGE": " FTP ",
            "FTP_HOST": "ftp.example",
            "FTP_PORT": "2121",
            "FTP_TLS": "yes",
            "FTP_TLS_VERIFY": "off",
            "FTP_TIMEOUT": "2.5",
            "FTP_POOL_SIZE": "8",
            "S3_BUCKET": "b",
            "S3_FORCE_PATH_STYLE": "TRUE",
            "S3_PREFIX": "drive/",
            "MAX_BLOB_SIZE": "1000",
            "MAX_JSON_BLOB_SIZE": "5000",
            "UPLOAD_LEASE_SECONDS": "1.5",
            "LOG_LEVEL": "debug",
            "DATABASE_URL": "",  # empty counts as unset
            "MAX_HEADER_BYTES": "8192",
            "HEADER_TIMEOUT_SECONDS": "0.5",
            "KEEPALIVE_TIMEOUT_SECONDS": "7",
            "BODY_TIMEOUT_SECONDS": "1.5",
            "MAX_CONNECTIONS": "4",
        }
    )
    assert (settings.max_header_bytes, settings.max_connections) == (8192, 4)
    assert (settings.header_timeout_seconds, settings.keepalive_timeout_seconds) == (0.5, 7.0)
    assert settings.body_timeout_seconds == 1.5
    assert settings.storage == "ftp"
    assert settings.ftp == FtpSettings(host="ftp.example", port=2121, tls=True, verify=False, timeout=2.5, pool_size=8)
    assert settings.s3 == S3Settings(bucket="b", force_path_style=True, prefix="drive/")
    assert settings.max_blob_size == 1000
    assert settings.max_json_blob_size == 1000  # never above the blob limit
    assert settings.upload_lease_seconds == 1.5
    assert settings.log_level == "DEBUG"
    assert settings.database_url == "sqlite:///./data/metadata.db"


def test_no_token_names_the_variable() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({})
    assert "AUTH_BEARER_TOKEN" in info.value.message


def test_scoped_tokens() -> None:
    settings = Settings.from_env({"AUTH_TOKENS": f"read:{READ}, read-write:{WRITE}", "AUTH_BEARER_TOKEN": TOKEN})
    assert settings.tokens == {READ: "read", WRITE: "read-write", TOKEN: "read-write"}


def test_a_token_listed_twice_with_one_scope_is_fine() -> None:
    settings = Settings.from_env({"AUTH_TOKENS": f"read-write:{TOKEN}", "AUTH_BEARER_TOKEN": TOKEN})
    assert settings.tokens == {TOKEN: "read-write"}


def test_secrets_are_not_in_repr() -> None:
    secrets = {
        "AUTH_BEARER_TOKEN": "bearer-secret-000000",
        "AUTH_TOKENS": "read:reader-secret-000000",
        "DATABASE_URL": "postgresql://drive:db-secret@db/drive",
        "BLOB_DATABASE_URL": "postgresql://drive:blob-db-secret@db/blobs",
        "S3_BUCKET": "b",
        "S3_ACCESS_KEY": "AKIDVISIBLE",
        "S3_SECRET_KEY": "s3-secret",
        "S3_SESSION_TOKEN": "session-secret",
        "FTP_HOST": "h",
        "FTP_PASSWORD": "ftp-secret",
    }
    text = repr(Settings.from_env(secrets))
    assert "FtpSettings(host='h'" in text and "S3Settings(bucket='b'" in text and "AKIDVISIBLE" in text
    assert "secret" not in text  # every secret value above contains the word


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"STORAGE": "tape"}, "STORAGE"),
        ({"STORAGE": "s3"}, "S3_BUCKET"),
        ({"STORAGE": "ftp"}, "FTP_HOST"),
        ({"DRIVE_BACKENDS": "ftp"}, "FTP_HOST"),
        ({"FTP_HOST": "h", "FTP_PORT": "x"}, "FTP_PORT"),
        ({"FTP_HOST": "h", "FTP_PORT": "21.5"}, "FTP_PORT"),
        ({"FTP_HOST": "h", "FTP_POOL_SIZE": "0"}, "FTP_POOL_SIZE"),
        ({"FTP_HOST": "h", "FTP_TIMEOUT": "soon"}, "FTP_TIMEOUT"),
        ({"FTP_HOST": "h", "FTP_TLS_VERIFY": "perhaps"}, "FTP_TLS_VERIFY"),
        ({"S3_BUCKET": "b", "S3_TIMEOUT": "-3"}, "S3_TIMEOUT"),
        ({"S3_BUCKET": "b", "S3_FORCE_PATH_STYLE": "maybe"}, "S3_FORCE_PATH_STYLE"),
        ({"S3_BUCKET": "b", "S3_ACCESS_KEY": "only-one"}, "S3_ACCESS_KEY"),
        ({"AUTH_TOKENS": "admin:x"}, "AUTH_TOKENS"),
        ({"DRIVE_BACKENDS": "fs,tape"}, "DRIVE_BACKENDS"),
        ({"MAX_BLOB_SIZE": "-1"}, "MAX_BLOB_SIZE"),
        ({"MAX_BLOB_SIZE": "lots"}, "MAX_BLOB_SIZE"),
        ({"MAX_JSON_BLOB_SIZE": "0"}, "MAX_JSON_BLOB_SIZE"),
        ({"UPLOAD_LEASE_SECONDS": "0"}, "UPLOAD_LEASE_SECONDS"),
        ({"RECOVERY_INTERVAL_SECONDS": "nan"}, "RECOVERY_INTERVAL_SECONDS"),
        ({"MAX_HEADER_BYTES": "0"}, "MAX_HEADER_BYTES"),
        ({"MAX_HEADER_BYTES": "16k"}, "MAX_HEADER_BYTES"),
        ({"HEADER_TIMEOUT_SECONDS": "0"}, "HEADER_TIMEOUT_SECONDS"),
        ({"KEEPALIVE_TIMEOUT_SECONDS": "-5"}, "KEEPALIVE_TIMEOUT_SECONDS"),
        ({"BODY_TIMEOUT_SECONDS": "never"}, "BODY_TIMEOUT_SECONDS"),
        ({"MAX_CONNECTIONS": "0"}, "MAX_CONNECTIONS"),
        ({"MAX_CONNECTIONS": "1.5"}, "MAX_CONNECTIONS"),
    ],
)
def test_bad_settings_name_the_variable_not_the_value(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({"AUTH_BEARER_TOKEN": "secret-token-0123456789", **env})
    message = info.value.message
    assert named in message
    assert "secret-token" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "name",
    ["STORAGE", "DRIVE_BACKENDS", "FTP_PORT", "FTP_TIMEOUT", "FTP_TLS", "S3_TIMEOUT", "MAX_BLOB_SIZE"],
)
def test_a_bad_value_is_not_echoed(name: str) -> None:
    env = {"AUTH_BEARER_TOKEN": TOKEN, "S3_BUCKET": "b", "FTP_HOST": "h", name: "leaky-value"}
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    assert name in info.value.message and "leaky" not in info.value.message


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AUTH_BEARER_TOKEN": "short-secret"}, "AUTH_BEARER_TOKEN"),
        ({"AUTH_BEARER_TOKEN": "x" * 15}, "AUTH_BEARER_TOKEN"),
        ({"AUTH_TOKENS": "read:short-secret"}, "AUTH_TOKENS"),
        ({"AUTH_BEARER_TOKEN": TOKEN, "AUTH_TOKENS": f"read:{READ},read-write:short-secret"}, "AUTH_TOKENS"),
    ],
)
def test_short_tokens_are_refused(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError, match="shorter than 16 characters") as info:
        Settings.from_env(env)
    assert named in info.value.message
    assert "short-secret" not in info.value.message and "xxxx" not in info.value.message


def test_sixteen_characters_are_enough() -> None:
    assert Settings.from_env({"AUTH_BEARER_TOKEN": "x" * 16}).tokens == {"x" * 16: "read-write"}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AUTH_TOKENS": f"read:{READ},read-write:{READ}"}, "AUTH_TOKENS"),
        ({"AUTH_TOKENS": f"read-write:{READ}, read:{READ}"}, "AUTH_TOKENS"),
        ({"AUTH_TOKENS": f"read:{TOKEN}", "AUTH_BEARER_TOKEN": TOKEN}, "AUTH_BEARER_TOKEN"),
    ],
)
def test_a_token_with_two_scopes_is_refused(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError, match="two scopes") as info:
        Settings.from_env(env)
    assert named in info.value.message
    assert READ not in info.value.message and TOKEN not in info.value.message


def test_backends_enabled_by_their_settings() -> None:
    settings = Settings.from_env(
        {"AUTH_BEARER_TOKEN": TOKEN, "STORAGE": "db", "S3_BUCKET": "b", "FTP_HOST": "h", "FS_BASE_PATH": "/x"}
    )
    assert settings.backends == ("fs", "db", "s3", "ftp")
    assert settings.storage == "db"


def test_backends_enabled_by_drive_backends_and_blob_database_url() -> None:
    settings = Settings.from_env(
        {
            "AUTH_BEARER_TOKEN": TOKEN,
            "STORAGE": "s3",
            "S3_BUCKET": "b",
            "DRIVE_BACKENDS": "fs",
            "BLOB_DATABASE_URL": "u",
        }
    )
    assert settings.backends == ("fs", "db", "s3")
    assert settings.blob_database_url == "u"
