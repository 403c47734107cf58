"""Setting up a SrvCall (MRxCreateSrvCall): the HTTP client, the authentication the server's
401 challenge asks for (Digest, else Basic), and the checks, all within the set-up's deadline.

Credentials are read here, live only in the SrvCall's httpx auth object, and never appear in a
log line, a message, an exception text or a result."""

from __future__ import annotations

import httpx

from rdbss.minirdrs.common.setup import AUTHENTICATE, NEGOTIATE, TCP_CONNECT, SetupDeadline
from rdbss.minirdrs.webdav.config import ServerConfig
from rdbss.minirdrs.webdav.errors import connect_status, error, http_status, reason
from rdbss.minirdrs.webdav.props import PROPFIND_BODY
from rdbss.minirdrs.webdav.session import Session
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus
USER_AGENT = "rdbss-webdav/0.1"


def connect(config: ServerConfig, timeout: float, setup: SetupDeadline) -> Session:
    """A new SrvCall: a PROPFIND of the server's URL answers the authentication challenge
    (the negotiate), then an authenticated one checks the credentials; all within the
    set-up's deadline. A set-up that ends late is closed again (STATUS_IO_TIMEOUT)."""
    client = httpx.Client(
        timeout=httpx.Timeout(timeout),
        verify=config.verify,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
    )
    server = Session(config, client, timeout)
    try:
        credentials = config.credentials()
        response = _setup_request(server, setup, NEGOTIATE)
        if response.status_code == 401:
            if credentials is None:
                raise error(
                    S.STATUS_LOGON_FAILURE,
                    f"server {config.name!r} asks for credentials and none are configured",
                )
            challenge = ",".join(response.headers.get_list("www-authenticate")).lower()
            if "digest" in challenge:
                client.auth = httpx.DigestAuth(*credentials)
            elif "basic" in challenge:
                client.auth = httpx.BasicAuth(*credentials)
            else:
                raise error(
                    S.STATUS_LOGON_FAILURE,
                    f"server {config.name!r} asks for an authentication scheme that is "
                    "not supported (only Digest and Basic are)",
                )
            del credentials
            probe(server, setup)
        elif response.status_code != 207:
            raise _setup_failure(server, response)
        setup.check()
    except BaseException:
        server.close()
        raise
    return server


def probe(server: Session, setup: SetupDeadline) -> None:
    """An authenticated PROPFIND Depth 0 on the server's URL."""
    server.check_alive()
    response = _setup_request(server, setup, AUTHENTICATE)
    if response.status_code != 207:
        raise _setup_failure(server, response)


def _setup_request(server: Session, setup: SetupDeadline, phase: str) -> httpx.Response:
    """PROPFIND Depth 0 on the server's URL, within what is left of the set-up's deadline;
    transport failures as set-up statuses."""
    what = f"cannot connect to {server.name!r}"
    left = setup.enter(phase)
    try:
        return server.client.request(
            "PROPFIND",
            server.config.url,
            headers={"Depth": "0", "Content-Type": 'application/xml; charset="utf-8"'},
            content=PROPFIND_BODY,
            timeout=httpx.Timeout(min(left, server.timeout)),
        )
    except httpx.ConnectTimeout:
        raise setup.expired(TCP_CONNECT) from None
    except httpx.TimeoutException:
        if setup.passed:
            raise setup.expired() from None
        raise error(S.STATUS_IO_TIMEOUT, f"{what}: no answer within {server.timeout:g} s") from None
    except httpx.ConnectError as exc:
        raise error(connect_status(exc), f"{what}: {exc}") from None
    except httpx.TransportError as exc:
        raise error(
            S.STATUS_CONNECTION_DISCONNECTED, f"{what}: {type(exc).__name__}: {exc}"
        ) from None


def _setup_failure(server: Session, response: httpx.Response) -> NtStatusError:
    code = response.status_code
    what = f"cannot connect to {server.name!r}"
    if code == 401:
        return error(S.STATUS_LOGON_FAILURE, f"{what}: the server refused the credentials")
    if code == 403:
        return error(S.STATUS_ACCESS_DENIED, f"{what}: {reason(response)}")
    if code in (404, 405, 501) or 300 <= code < 400:
        return error(
            S.STATUS_BAD_NETWORK_PATH,
            f"{what}: no WebDAV collection at the url ({reason(response)})",
        )
    return error(http_status(code, "PROPFIND"), f"{what}: {reason(response)}")
