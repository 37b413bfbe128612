"""Opening one logged-in FTP client, plain or explicit FTPS.

TLS is explicit FTPS (RFC 4217): ``AUTH TLS`` upgrades the control connection, then
``PBSZ 0`` + ``PROT P`` make the server require TLS on every data connection too.
aioftp's ``Client.upgrade_to_tls`` sends all three, and from then on opens each passive
data connection with the control connection's SSL context (same CA, hostname checked).
"""

from __future__ import annotations

import ssl

import aioftp
import anyio

from drive.adapters.ftp.errors import LIBRARY_ERRORS, connect_failure
from drive.domain.errors import StorageUnavailable
from drive.settings import FtpSettings


def tls_context(settings: FtpSettings) -> ssl.SSLContext:
    """The context for ``FTP_TLS``: with ``FTP_CA_FILE`` only that CA is trusted."""
    try:
        context = ssl.create_default_context(cafile=settings.ca_file if settings.verify else None)
    except (OSError, ValueError):
        raise StorageUnavailable("FTP_CA_FILE is not a readable PEM CA certificate file") from None
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def connect(settings: FtpSettings, context: ssl.SSLContext | None) -> aioftp.Client:
    """A new logged-in client (over TLS when ``context`` is given); failures name the setting at fault."""
    timeout = settings.timeout
    client = aioftp.Client(socket_timeout=timeout, connection_timeout=timeout, path_timeout=timeout)
    step = "connect"
    try:
        with anyio.fail_after(timeout):
            await client.connect(settings.host, settings.port)
            if context is not None:
                step = "tls"
                await client.upgrade_to_tls(context)
            step = "login"
            await client.login(settings.user, settings.password)
    except BaseException as exc:
        client.close()
        if not isinstance(exc, (*LIBRARY_ERRORS, TimeoutError)):
            raise
        raise connect_failure(step, exc, settings) from None
    return client


def looks_closed(client: aioftp.Client) -> bool:
    """The server hung up (or the socket is gone) while the connection sat idle."""
    try:
        stream = client.stream
    except ConnectionError:
        return True
    return bool(stream.reader.at_eof() or stream.writer.transport.is_closing())
