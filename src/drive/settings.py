"""Settings from the environment, with the seed's variable names.

Every problem is reported as one ``ConfigurationError`` line naming the variable,
never its value (values may be secrets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from drive.domain.errors import ConfigurationError

Scope = Literal["read", "read-write"]
BACKEND_NAMES = ("fs", "db", "s3", "ftp")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class S3Settings:
    bucket: str
    region: str = "us-east-1"
    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    force_path_style: bool = False
    prefix: str = ""
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class FtpSettings:
    host: str
    port: int = 21
    user: str = "anonymous"
    password: str = field(default="", repr=False)
    tls: bool = False
    base_dir: str = "/"
    timeout: float = 30.0
    ca_file: str | None = None
    verify: bool = True
    pool_size: int = 4


@dataclass(frozen=True, slots=True)
class Settings:
    tokens: Mapping[str, Scope] = field(repr=False)
    storage: str = "fs"
    backends: tuple[str, ...] = ("fs",)
    database_url: str = "sqlite:///./data/metadata.db"
    blob_database_url: str | None = None
    fs_base_path: str = "./data/blobs"
    s3: S3Settings | None = None
    ftp: FtpSettings | None = None
    max_blob_size: int = 5 * 1024**3
    max_json_blob_size: int = 32 * 1024**2
    upload_lease_seconds: float = 60.0
    recovery_interval_seconds: float = 300.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Env(os.environ if environ is None else environ)
        tokens = _tokens(env)
        storage = env.choice("STORAGE", BACKEND_NAMES, "fs")
        s3 = ftp = None
        if storage == "s3" or env.get("S3_BUCKET") or "s3" in env.items("DRIVE_BACKENDS"):
            s3 = S3Settings(
                bucket=env.required("S3_BUCKET", "STORAGE=s3"),
                region=env.get("S3_REGION") or "us-east-1",
                endpoint=env.get("S3_ENDPOINT") or None,
                access_key=env.get("S3_ACCESS_KEY") or None,
                secret_key=env.get("S3_SECRET_KEY") or None,
                session_token=env.get("S3_SESSION_TOKEN") or None,
                force_path_style=env.flag("S3_FORCE_PATH_STYLE", False),
                prefix=env.get("S3_PREFIX") or "",
                timeout=env.number("S3_TIMEOUT", 30.0),
            )
            if bool(s3.access_key) != bool(s3.secret_key):
                raise ConfigurationError("S3_ACCESS_KEY and S3_SECRET_KEY must be set together")
        if storage == "ftp" or env.get("FTP_HOST") or "ftp" in env.items("DRIVE_BACKENDS"):
            ftp = FtpSettings(
                host=env.required("FTP_HOST", "STORAGE=ftp"),
                port=int(env.number("FTP_PORT", 21, integer=True)),
                user=env.get("FTP_USER") or "anonymous",
                password=env.get("FTP_PASSWORD") or "",
                tls=env.flag("FTP_TLS", False),
                base_dir=env.get("FTP_BASE_DIR") or "/",
                timeout=env.number("FTP_TIMEOUT", 30.0),
                ca_file=env.get("FTP_CA_FILE") or None,
                verify=env.flag("FTP_TLS_VERIFY", True),
                pool_size=int(env.number("FTP_POOL_SIZE", 4, integer=True)),
            )
        backends = {storage, *env.items("DRIVE_BACKENDS")}
        for name in backends:
            if name not in BACKEND_NAMES:
                raise ConfigurationError(f"DRIVE_BACKENDS lists an unknown backend (known: {', '.join(BACKEND_NAMES)})")
        if env.get("FS_BASE_PATH"):
            backends.add("fs")
        if env.get("BLOB_DATABASE_URL"):
            backends.add("db")
        if s3:
            backends.add("s3")
        if ftp:
            backends.add("ftp")
        max_blob = int(env.number("MAX_BLOB_SIZE", 5 * 1024**3, integer=True))
        return cls(
            tokens=tokens,
            storage=storage,
            backends=tuple(name for name in BACKEND_NAMES if name in backends),
            database_url=env.get("DATABASE_URL") or "sqlite:///./data/metadata.db",
            blob_database_url=env.get("BLOB_DATABASE_URL") or None,
            fs_base_path=env.get("FS_BASE_PATH") or "./data/blobs",
            s3=s3,
            ftp=ftp,
            max_blob_size=max_blob,
            max_json_blob_size=min(max_blob, int(env.number("MAX_JSON_BLOB_SIZE", 32 * 1024**2, integer=True))),
            upload_lease_seconds=env.number("UPLOAD_LEASE_SECONDS", 60.0),
            recovery_interval_seconds=env.number("RECOVERY_INTERVAL_SECONDS", 300.0),
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
        )


def _tokens(env: _Env) -> dict[str, Scope]:
    tokens: dict[str, Scope] = {}
    for entry in env.items("AUTH_TOKENS"):
        scope, sep, token = entry.partition(":")
        if not sep or not token or scope not in ("read", "read-write"):
            raise ConfigurationError("AUTH_TOKENS entries must look like read:<token> or read-write:<token>")
        tokens[token] = "read-write" if scope == "read-write" else "read"
    main = env.get("AUTH_BEARER_TOKEN")
    if main:
        tokens[main] = "read-write"
    if not tokens:
        raise ConfigurationError("AUTH_BEARER_TOKEN is not set: refusing to start without a token")
    return tokens


class _Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str) -> str | None:
        value = self._environ.get(name)
        return value.strip() if value is not None else None

    def required(self, name: str, because: str) -> str:
        value = self.get(name)
        if not value:
            raise ConfigurationError(f"{name} is required when {because} (or when the backend is enabled)")
        return value

    def items(self, name: str) -> list[str]:
        return [part.strip() for part in (self.get(name) or "").split(",") if part.strip()]

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = (self.get(name) or default).lower()
        if value not in allowed:
            raise ConfigurationError(f"{name} must be one of {', '.join(allowed)}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigurationError(f"{name} must be true or false")

    def number(self, name: str, default: float, *, integer: bool = False) -> float:
        value = self.get(name)
        if not value:
            return default
        try:
            number = int(value) if integer else float(value)
        except ValueError:
            raise ConfigurationError(f"{name} must be a {'whole ' if integer else ''}number") from None
        if number <= 0:
            raise ConfigurationError(f"{name} must be positive")
        return number
