"""The one HTTP path every adapter uses: timeouts, retries that honour Retry-After, error classification.

Rules (see README "Provider calls"):
- every attempt has a timeout;
- 429 is retried on any call: the provider refused the request, so nothing was created;
- 408, 5xx and broken connections are retried only on idempotent calls (polls, result fetches, cancels);
- a submit is retried only when it surely never reached the provider (the connection could not be opened);
- 401/403 become ProviderAuthError, other 4xx ProviderRejectedError with the provider's own words;
- requests (which carry the key) go only to the provider's configured origin;
- output downloads carry no key, follow redirects one by one (at most MAX_REDIRECTS), and every hop must be
  http(s) to a public address, unless it is the provider's own origin or ALLOW_PRIVATE_OUTPUT_URLS is set.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import logging
import random
import socket
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import yarl
from aiolimiter import AsyncLimiter
from multidict import CIMultiDictProxy
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from bot.errors import (
    MalformedResponseError,
    OutputError,
    ProviderAuthError,
    ProviderError,
    ProviderProtocolError,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from bot.ops import metrics
from bot.redaction import redact, register_secret

log = logging.getLogger(__name__)

MAX_ERROR_TEXT = 300
# 4xx answers an adapter may want to read itself (a job failure, "already completed"); never auth or throttling.
CLIENT_ERRORS = frozenset(set(range(400, 500)) - {401, 403, 408, 429})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    timeout_s: float = 30.0
    download_timeout_s: float = 120.0
    max_attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    # A Retry-After longer than this is not waited out: the call fails as "rate limited" instead.
    max_retry_after_s: float = 120.0
    # Output URLs on loopback, private or link-local addresses are refused unless this is set (ALLOW_PRIVATE_
    # OUTPUT_URLS): a provider's answer must not make the bot fetch from its own machine or network.
    allow_private_outputs: bool = False


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes = field(repr=False)
    provider: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedResponseError(
                self.provider, f"answered HTTP {self.status} with a body that is not JSON"
            ) from exc

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise ProviderProtocolError(self.provider, f"answered HTTP {self.status} with JSON that is not an object")
        return data


class _Retry(Exception):
    """Internal: an attempt failed in a way that may be retried."""

    def __init__(self, error: ProviderError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def provider_message(body: bytes, *, limit: int = MAX_ERROR_TEXT) -> str:
    """The provider's own words from an error body, whatever shape it uses."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:limit] or "(empty body)"
    return _message_from(data)[:limit]


def message_in(data: Any, *, limit: int = MAX_ERROR_TEXT) -> str:
    """The provider's own words from an already-parsed error body."""
    return _message_from(data)[:limit]


def _message_from(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        parts = [_message_from(item) for item in data[:5]]
        return "; ".join(p for p in parts if p)
    if isinstance(data, dict):
        for key in ("detail", "message", "msg", "error", "reason", "error_message"):
            if data.get(key):
                inner = _message_from(data[key])
                if key == "msg" and isinstance(data.get("loc"), list):
                    where = ".".join(str(x) for x in data["loc"] if x != "body")
                    return f"{where}: {inner}" if where else inner
                return inner
        return json.dumps(data)[:MAX_ERROR_TEXT]
    return str(data)


class ProviderHttp:
    """An HTTP client for one provider: its auth headers, its rate limit, the shared retry policy."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        provider: str,
        *,
        headers: Mapping[str, str] | None = None,
        secrets: Collection[str] = (),
        policy: HttpPolicy | None = None,
        requests_per_second: float | None = None,
        base_url: str | None = None,
    ) -> None:
        self.session = session
        self.provider = provider
        # Where the key may be sent (scheme, host, port of the configured base URL); None: not checked.
        self.origin = url_origin(base_url) if base_url else None
        self.headers = dict(headers or {})
        self._secrets = [s for s in secrets if s]
        for secret in self._secrets:
            register_secret(secret)  # masked in any provider text, whichever adapter builds the message
        self.policy = policy or HttpPolicy()
        self._rate = requests_per_second
        self._limiter = AsyncLimiter(requests_per_second, 1.0) if requests_per_second else None
        self.request_count = 0

    def share_rate(self, processes: int) -> None:
        """The request budget is the key's, shared by `processes` processes: this one takes its equal part."""
        if self._rate:
            self._limiter = AsyncLimiter(self._rate / max(1, processes), 1.0)

    def redact(self, text: str) -> str:
        return redact(text)

    async def request(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        json_body: Any = None,
        data: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
    ) -> HttpResponse:
        """Send one logical request; return a 2xx response (or one whose status is in `accept`)."""
        try:
            async for attempt in self._retrying():
                with attempt:
                    return await self._attempt(
                        method, url, idempotent=idempotent, json_body=json_body, data=data,
                        params=params, headers=headers, accept=accept,
                    )
        except _Retry as exc:
            raise exc.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _retrying(self) -> AsyncRetrying:
        """The one retry policy: only _Retry is retried, waiting as the provider asked or backing off."""
        return AsyncRetrying(stop=stop_after_attempt(self.policy.max_attempts), wait=self._wait,
                             retry=retry_if_exception(lambda exc: isinstance(exc, _Retry)), reraise=True)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            return exc.retry_after
        step = min(self.policy.backoff_max_s, self.policy.backoff_base_s * 2.0 ** (state.attempt_number - 1))
        return step * random.uniform(0.5, 1.5)

    async def _attempt(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        json_body: Any,
        data: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        accept: Collection[int],
    ) -> HttpResponse:
        if self.origin is not None and url_origin(url) != self.origin:
            # A URL from an answer naming another host must never receive the key.
            raise ProviderProtocolError(self.provider, f"refused to send the API key to {_where(url)}, which is "
                                        "not the configured host")
        if self._limiter is not None:
            await self._limiter.acquire()
        self.request_count += 1
        all_headers = {**self.headers, **(headers or {})}
        timeout = aiohttp.ClientTimeout(total=self.policy.timeout_s)
        began = time.monotonic()
        try:
            async with self.session.request(
                method, url, json=json_body, data=data, params=params, headers=all_headers, timeout=timeout
            ) as resp:
                body = await resp.read()
                status = resp.status
                resp_headers: CIMultiDictProxy[str] = resp.headers
        except aiohttp.ClientConnectorError as exc:
            metrics.observe_provider_request(self.provider, method, "connection", time.monotonic() - began)
            # The connection was never opened, so the request surely did not arrive: safe to send again.
            unreachable = ProviderUnavailableError(self.provider, f"cannot connect ({exc.os_error})")
            unreachable.sent = False
            raise _Retry(unreachable, None) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            metrics.observe_provider_request(self.provider, method, "timeout" if timed_out else "connection",
                                             time.monotonic() - began)
            what = "timed out" if timed_out else f"connection failed ({type(exc).__name__})"
            error = ProviderUnavailableError(self.provider, f"{method} {what}")
            if idempotent:
                raise _Retry(error, None) from exc
            raise error from exc
        metrics.observe_provider_request(self.provider, method, metrics.status_class(status), time.monotonic() - began)

        log.debug("%s %s %s -> %s", self.provider, method, url, status)
        response = HttpResponse(status=status, headers=resp_headers, body=body, provider=self.provider)
        if 200 <= status < 300 or status in accept:
            return response
        raise self._classify(method, response, idempotent)

    def _classify(self, method: str, response: HttpResponse, idempotent: bool) -> Exception:
        status = response.status
        message = self.redact(provider_message(response.body))
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > self.policy.max_retry_after_s:
                return ProviderUnavailableError(
                    self.provider, f"rate limited; the provider asks to wait {retry_after:.0f} s", status=status
                )
            return _Retry(ProviderUnavailableError(self.provider, f"rate limited (429): {message}", status=status),
                          retry_after)
        if status in (401, 403):
            what = "rejected the API key" if status == 401 else "refused access (the account may need attention)"
            return ProviderAuthError(self.provider, f"{what} (HTTP {status}): {message}", status=status)
        if status == 408 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            error = ProviderUnavailableError(self.provider, f"HTTP {status}: {message}", status=status)
            if idempotent and (retry_after is None or retry_after <= self.policy.max_retry_after_s):
                return _Retry(error, retry_after)
            return error
        return ProviderRejectedError(self.provider, f"HTTP {status}: {message}", status=status)

    def error_for(self, method: str, response: HttpResponse, *, idempotent: bool) -> ProviderError:
        """The error this path raises for an answer: for an adapter that took a 4xx with `accept` to read its
        body first and found it is not one it handles itself."""
        error = self._classify(method, response, idempotent)
        if isinstance(error, _Retry):
            return error.error
        assert isinstance(error, ProviderError)
        return error

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """Fetch an output file with a size cap; retried like any idempotent call."""
        try:
            async for attempt in self._retrying():
                with attempt:
                    return await self._download_once(url, max_bytes)
        except _Retry as exc:
            raise exc.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _download_once(self, url: str, max_bytes: int) -> bytes:
        timeout = aiohttp.ClientTimeout(total=self.policy.download_timeout_s)
        try:
            async with asyncio.timeout(self.policy.download_timeout_s):
                for _ in range(MAX_REDIRECTS + 1):
                    pinned = await self._check_output_url(url)
                    target, options = _pinned_request(url, pinned)
                    self.request_count += 1
                    # Output URLs are pre-signed: they must not receive the provider's API key.
                    async with self.session.get(target, timeout=timeout, allow_redirects=False, **options) as resp:
                        location = resp.headers.get("Location")
                        if resp.status in REDIRECTS and location:
                            # Against the URL as named, not the address it was pinned to.
                            url = str(yarl.URL(url).join(yarl.URL(location)))
                            continue
                        return await self._read_output(resp, max_bytes)
                raise OutputError(self.provider, f"the output URL redirected more than {MAX_REDIRECTS} times")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _Retry(OutputError(self.provider, f"output download failed ({type(exc).__name__})"), None) from exc

    async def _read_output(self, resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
        if resp.status in (403, 404, 410):
            gone = f"the output image is gone (HTTP {resp.status}); it may have expired"
            raise OutputError(self.provider, gone)
        if resp.status == 429 or resp.status >= 500:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            failed = OutputError(self.provider, f"output download failed (HTTP {resp.status})")
            if retry_after is not None and retry_after > self.policy.max_retry_after_s:
                raise failed
            raise _Retry(failed, retry_after)
        if resp.status >= 300:
            raise OutputError(self.provider, f"output download failed (HTTP {resp.status})")
        if resp.content_length is not None and resp.content_length > max_bytes:
            raise OutputError(self.provider, f"the output image is larger than {max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise OutputError(self.provider, f"the output image is larger than {max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _check_output_url(self, url: str) -> str | None:
        """Refuse an output URL (or redirect target) that is not http(s), or that resolves to an address of this
        machine or its network, unless it is the provider's own host or private outputs are allowed. Returns the
        checked address the download must connect to (None where no check applies): resolving the name again
        when connecting would let a DNS answer that changes in between (rebinding) reach a private address."""
        parsed = yarl.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise OutputError(self.provider, f"refused an output URL that is not http(s): {_where(url)}")
        if self.policy.allow_private_outputs or (self.origin is not None and url_origin(url) == self.origin):
            return None
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parsed.host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise _Retry(OutputError(self.provider, f"cannot resolve the output host {parsed.host[:80]}"),
                         None) from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        for address in addresses:
            if not _public(address):
                raise OutputError(self.provider, f"refused an output URL on a private address ({_where(url)} is "
                                  f"{address}); set ALLOW_PRIVATE_OUTPUT_URLS=true to allow it")
        if not addresses:
            raise _Retry(OutputError(self.provider, f"cannot resolve the output host {parsed.host[:80]}"), None)
        return str(addresses[0])


def _pinned_request(url: str, address: str | None) -> tuple[str, dict[str, Any]]:
    """The URL to connect to and the request options that keep it the named host's request: the same Host header
    and, over TLS, the certificate checked against the name."""
    if address is None:
        return url, {}
    parsed = yarl.URL(url)
    options: dict[str, Any] = {"headers": {"Host": parsed.host_port_subcomponent or parsed.host or ""}}
    if parsed.scheme == "https":
        options["server_hostname"] = parsed.host
    return str(parsed.with_host(address)), options


def url_origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the unit a key is trusted to."""
    parsed = yarl.URL(url)
    return parsed.scheme.lower(), (parsed.host or "").lower(), parsed.port


def _where(url: str) -> str:
    """A URL's scheme and host, for messages: never its path or query, which may carry signatures."""
    parsed = yarl.URL(url)
    return f"{parsed.scheme}://{parsed.host}" if parsed.host else parsed.scheme + ":"


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # is_global also rules out what is neither private nor public, e.g. 100.64.0.0/10 (shared address space).
    return address.is_global and not (address.is_private or address.is_loopback or address.is_link_local
                                      or address.is_multicast or address.is_reserved or address.is_unspecified)
