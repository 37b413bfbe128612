"""Settings from the environment, with the seed's variable names.

Each setting is declared once, with its default, as a field of a ``msgspec.Struct``
whose encoded name is its variable; ``msgspec.convert`` (lax, so ``"21"`` becomes 21)
reads them. An empty variable counts as unset. Every problem is reported as one
``ConfigurationError`` line naming the variable, never its value (values may be secrets).
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import msgspec

from drive.domain.errors import ConfigurationError
from drive.domain.links import KEY_ID, MIN_SECRET_BYTES, SigningKey

Scope = Literal["read", "read-write"]
BACKEND_NAMES = ("fs", "db", "s3", "ftp")
MIN_TOKEN_LENGTH = 16
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]


class _EnvStruct(msgspec.Struct, frozen=True, kw_only=True):
    """Settings read from variables named after their fields; ``repr`` leaves out ``_secrets``."""

    _secrets: ClassVar[frozenset[str]] = frozenset()
    # Fields worked out from several variables rather than read from one.
    _derived: ClassVar[frozenset[str]] = frozenset()

    def __repr__(self) -> str:
        shown = (f"{name}={getattr(self, name)!r}" for name in self.__struct_fields__ if name not in self._secrets)
        return f"{type(self).__name__}({', '.join(shown)})"


class S3Settings(_EnvStruct, frozen=True, rename=lambda name: f"S3_{name.upper()}"):
    _secrets = frozenset({"secret_key", "session_token"})

    bucket: str
    region: str = "us-east-1"
    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    force_path_style: bool = False
    prefix: str = ""
    timeout: PositiveFloat = 30.0


class FtpSettings(_EnvStruct, frozen=True, rename=lambda name: f"FTP_{name.upper()}"):
    _secrets = frozenset({"password"})

    host: str
    port: PositiveInt = 21
    user: str = "anonymous"
    password: str = ""
    tls: bool = False
    base_dir: str = "/"
    timeout: PositiveFloat = 30.0
    ca_file: str | None = None
    verify: bool = msgspec.field(default=True, name="FTP_TLS_VERIFY")
    pool_size: PositiveInt = 4


class Settings(_EnvStruct, frozen=True, rename="upper"):
    # Database URLs may carry a password.
    _secrets = frozenset({"tokens", "database_url", "blob_database_url", "signing_keys"})
    _derived = frozenset({"tokens", "backends", "s3", "ftp", "signing_keys", "cors_allow_origins"})

    tokens: Mapping[str, Scope] = msgspec.field(default_factory=dict)
    # Signed links (SIGNING_KEYS, `key-id:secret,...`): the first signs, all verify; none disables links.
    signing_keys: tuple[SigningKey, ...] = ()
    # Browsers (CORS_ALLOW_ORIGINS): origins allowed to call the API from a page, or ("*",); none: no CORS.
    cors_allow_origins: tuple[str, ...] = ()
    storage: str = "fs"
    backends: tuple[str, ...] = ("fs",)
    database_url: str = "sqlite:///./data/metadata.db"
    blob_database_url: str | None = None
    fs_base_path: str = "./data/blobs"
    s3: S3Settings | None = None
    ftp: FtpSettings | None = None
    max_blob_size: PositiveInt = 5 * 1024**3
    max_json_blob_size: PositiveInt = 32 * 1024**2
    upload_lease_seconds: PositiveFloat = 60.0
    upload_expiry_seconds: PositiveFloat = 86400.0  # a resumable upload untouched this long expires
    recovery_interval_seconds: PositiveFloat = 300.0
    log_level: str = "INFO"
    # Wire limits (entrypoints/http/wire.py): no client holds the server with slow or huge input.
    max_header_bytes: PositiveInt = 16 * 1024  # request line plus headers
    header_timeout_seconds: PositiveFloat = 10.0  # from connecting (or a request's first byte) to its last header
    keepalive_timeout_seconds: PositiveFloat = 5.0  # idle between requests on one connection
    body_timeout_seconds: PositiveFloat = 30.0  # longest wait for the next byte of a request body
    max_connections: PositiveInt = 1000  # per server process; beyond it, 503

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = {name: value.strip() for name, value in (os.environ if environ is None else environ).items()}
        env = {name: value for name, value in env.items() if value}
        tokens = _tokens(env)
        storage = env.get("STORAGE", "fs").lower()
        if storage not in BACKEND_NAMES:
            raise ConfigurationError(f"STORAGE must be one of {', '.join(BACKEND_NAMES)}")
        listed = _items(env, "DRIVE_BACKENDS")
        if not set(listed) <= set(BACKEND_NAMES):
            raise ConfigurationError(f"DRIVE_BACKENDS lists an unknown backend (known: {', '.join(BACKEND_NAMES)})")
        s3 = ftp = None
        if storage == "s3" or "S3_BUCKET" in env or "s3" in listed:
            s3 = _read(S3Settings, env, because="STORAGE=s3")
            if bool(s3.access_key) != bool(s3.secret_key):
                raise ConfigurationError("S3_ACCESS_KEY and S3_SECRET_KEY must be set together")
        if storage == "ftp" or "FTP_HOST" in env or "ftp" in listed:
            ftp = _read(FtpSettings, env, because="STORAGE=ftp")
        enabled = {storage, *listed}
        enabled |= {"fs"} if "FS_BASE_PATH" in env else set()
        enabled |= {"db"} if "BLOB_DATABASE_URL" in env else set()
        enabled |= {name for name, part in (("s3", s3), ("ftp", ftp)) if part is not None}
        read = _read(cls, env)
        return msgspec.structs.replace(
            read,
            tokens=tokens,
            signing_keys=_signing_keys(env),
            cors_allow_origins=_origins(env),
            storage=storage,
            backends=tuple(name for name in BACKEND_NAMES if name in enabled),
            s3=s3,
            ftp=ftp,
            max_json_blob_size=min(read.max_blob_size, read.max_json_blob_size),
            log_level=read.log_level.upper(),
        )

    def enabling(self, names: Iterable[str]) -> Settings:
        """The same settings with ``names`` enabled as well (each still needs its own settings)."""
        wanted = {*names, *self.backends}
        return msgspec.structs.replace(self, backends=tuple(name for name in BACKEND_NAMES if name in wanted))


_S = TypeVar("_S", bound=_EnvStruct)


def _read(kind: type[_S], env: Mapping[str, str], *, because: str = "") -> _S:
    """The fields of ``kind`` from their variables; a failure names the variable.

    ``because`` says when a required field is required.
    """
    fields = {field.encode_name: field for field in msgspec.structs.fields(kind) if field.name not in kind._derived}
    values: dict[str, Any] = {name: env[name] for name in fields if name in env}
    for name, value in values.items():
        if fields[name].type is bool:  # msgspec knows true/false/1/0 only
            values[name] = True if value.lower() in _TRUE else False if value.lower() in _FALSE else value
    try:
        return msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as exc:
        # msgspec's own message may quote the value: keep only the variable's name.
        missing = re.search(r"missing required field `(\w+)`", str(exc))
        if missing:
            name = missing[1]
            raise ConfigurationError(f"{name} is required when {because} (or when the backend is enabled)") from None
        at = re.search(r"`\$\.(\w+)`", str(exc))
        name = at[1] if at else kind.__name__
        raise ConfigurationError(f"{name} must be {_expected(fields[name].type if at else str)}") from None


def _expected(annotation: Any) -> str:
    base = typing.get_args(annotation)[0] if typing.get_origin(annotation) is Annotated else annotation
    return {bool: "true or false", int: "a positive whole number", float: "a positive number"}.get(base, "valid")


def _items(env: Mapping[str, str], name: str) -> list[str]:
    return [part.strip() for part in env.get(name, "").split(",") if part.strip()]


def _tokens(env: Mapping[str, str]) -> dict[str, Scope]:
    """Bearer tokens and their scopes: each long enough to resist guessing, each with one scope."""
    listed: list[tuple[str, Scope, str]] = []
    for entry in _items(env, "AUTH_TOKENS"):
        scope, sep, token = entry.partition(":")
        if not sep or not token or scope not in ("read", "read-write"):
            raise ConfigurationError("AUTH_TOKENS entries must look like read:<token> or read-write:<token>")
        listed.append((token, "read-write" if scope == "read-write" else "read", "AUTH_TOKENS"))
    if "AUTH_BEARER_TOKEN" in env:
        listed.append((env["AUTH_BEARER_TOKEN"], "read-write", "AUTH_BEARER_TOKEN"))
    if not listed:
        raise ConfigurationError("AUTH_BEARER_TOKEN is not set: refusing to start without a token")
    tokens: dict[str, Scope] = {}
    for token, scope, variable in listed:
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigurationError(f"{variable} holds a token shorter than {MIN_TOKEN_LENGTH} characters")
        if tokens.setdefault(token, scope) != scope:
            where = "AUTH_TOKENS" if variable == "AUTH_TOKENS" else "AUTH_TOKENS and AUTH_BEARER_TOKEN"
            raise ConfigurationError(f"a token has two scopes in {where}: give each token one scope")
    return tokens


def _signing_keys(env: Mapping[str, str]) -> tuple[SigningKey, ...]:
    """``key-id:secret`` entries; secrets long enough for HMAC-SHA256, each key id once."""
    keys: list[SigningKey] = []
    for entry in _items(env, "SIGNING_KEYS"):
        key_id, sep, secret = entry.partition(":")
        if not sep or KEY_ID.fullmatch(key_id.strip()) is None:
            raise ConfigurationError(
                "SIGNING_KEYS entries must look like <key-id>:<secret>, the key id of letters, digits, . _ or -"
            )
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigurationError(f"SIGNING_KEYS holds a secret shorter than {MIN_SECRET_BYTES} bytes")
        if any(key.key_id == key_id.strip() for key in keys):
            raise ConfigurationError("SIGNING_KEYS lists a key id twice: give each key its own id")
        keys.append(SigningKey(key_id.strip(), secret.encode()))
    return tuple(keys)


def _origins(env: Mapping[str, str]) -> tuple[str, ...]:
    """``*`` or origins as browsers send them (``scheme://host[:port]``, no path)."""
    origins = _items(env, "CORS_ALLOW_ORIGINS")
    if "*" in origins:
        if len(origins) > 1:
            raise ConfigurationError("CORS_ALLOW_ORIGINS is either * or a list of origins, not both")
        return ("*",)
    for origin in origins:
        if re.fullmatch(r"https?://[^/\s]+", origin) is None:
            raise ConfigurationError("CORS_ALLOW_ORIGINS entries must be origins like https://app.example.com")
    return tuple(origin.rstrip("/") for origin in origins)
