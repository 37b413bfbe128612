"""FTP failures as the domain's errors, in one line each.

Messages name the setting most likely at fault and the server's reply code, never the
host, the base directory, a storage key or a password: they may reach clients.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import aioftp

from drive.domain.errors import StorageUnavailable, StoredBytesMissing
from drive.settings import FtpSettings

# Library failures that mean "the backend misbehaved"; anything else is a bug or the caller's.
LIBRARY_ERRORS = (OSError, EOFError, aioftp.AIOFTPException, ValueError, IndexError)


def missing() -> StoredBytesMissing:
    return StoredBytesMissing("the stored bytes are missing from the FTP server")


def refused_with(exc: aioftp.StatusCodeError, pattern: str) -> bool:
    """The server's last reply matches ``pattern`` ("550", "5xx")."""
    return bool(exc.received_codes[-1].matches(pattern))


@contextmanager
def translated(action: str, timeout: float) -> Iterator[None]:
    """Turn library, socket, TLS and timeout errors into one-line ``StorageUnavailable``."""
    try:
        yield
    except TimeoutError:
        raise StorageUnavailable(f"FTP server did not answer within {timeout:g}s while trying to {action}") from None
    except aioftp.StatusCodeError as exc:
        raise StorageUnavailable(f"FTP server refused to {action} ({code(exc)})") from None
    except LIBRARY_ERRORS as exc:
        raise StorageUnavailable(f"FTP connection failed while trying to {action} ({reason(exc)})") from None


def connect_failure(step: str, exc: BaseException, settings: FtpSettings) -> StorageUnavailable:
    """Why connecting failed at ``step`` (connect, tls, login), naming the settings to check."""
    if step == "connect":
        if isinstance(exc, aioftp.StatusCodeError):
            return StorageUnavailable(f"FTP server did not greet properly ({code(exc)}); check FTP_HOST/FTP_PORT")
        return StorageUnavailable(f"cannot reach the FTP server ({reason(exc)}); check FTP_HOST/FTP_PORT")
    if step == "tls":
        if isinstance(exc, ssl.SSLCertVerificationError):
            return StorageUnavailable(
                f"FTP server certificate not trusted ({exc.verify_message}); "
                "check FTP_TLS, FTP_CA_FILE or FTP_TLS_VERIFY"
            )
        if isinstance(exc, aioftp.StatusCodeError):
            return StorageUnavailable(f"FTP server refused AUTH TLS ({code(exc)}); check FTP_TLS")
        return StorageUnavailable(f"TLS setup with the FTP server failed ({reason(exc)}); check FTP_TLS")
    if isinstance(exc, aioftp.StatusCodeError):
        hint = "check FTP_USER/FTP_PASSWORD" if settings.tls else "check FTP_USER/FTP_PASSWORD, or FTP_TLS"
        # The server's words help ("TLS required"), but never risk echoing the password.
        text = " ".join(str(line).strip() for line in exc.info)[:80]
        if settings.password:
            text = text.replace(settings.password, "***")
        return StorageUnavailable(f"FTP server refused login ({code(exc)} {text}); {hint}")
    return StorageUnavailable(f"FTP login failed ({reason(exc)}); check FTP_USER/FTP_PASSWORD and FTP_TLS")


def code(exc: aioftp.StatusCodeError) -> str:
    return "/".join(str(received) for received in exc.received_codes) or "no reply"


def reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aioftp.StatusCodeError):
        return f"reply {code(exc)}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or type(exc).__name__}"
    if isinstance(exc, OSError):
        # Not str(exc): asyncio's connect errors quote the address.
        if exc.errno and exc.errno > 0:
            return os.strerror(exc.errno)
        return "name not resolved" if isinstance(exc, socket.gaierror) else type(exc).__name__
    return type(exc).__name__
