"""Delivery through an upstream relay (smarthost): the relay's hosts are tried in the configured
order (primary first on every new connection, so a primary that comes back is used again at once),
each with TLS as configured (STARTTLS that must succeed, or TLS from the first byte; plain text only
to loopback, see mta.delivery.relayconf) and AUTH; then the session carries the same transactions
as MX delivery (mta.delivery.client.Connection).

A host is passed over for the next one when it cannot be reached, its TLS fails, it greets or
answers EHLO with anything but success (421 included), or AUTH fails. A wrong password is our
problem, never the recipient's: it defers the mail (the site backs off, see mta.queue.site), and
an authentication reply inside a transaction is turned into a temporary one for the same reason.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

import aiosmtplib

from mta.delivery.client import ClientSettings, ConnectFailure, Connection, RecipientResult, Source, reply_line
from mta.delivery.dnsroute_core import MxHost, Route
from mta.delivery.relayconf import Relay, RelayHost, RelaySection, load_relay
from mta.delivery.replypeek import ReplyPeek
from mta.model import Job, Recipient

log = logging.getLogger("mta.relay")

# RFC 4954: 530 authentication required, 535 credentials invalid, 538 encryption required for the
# mechanism. From a relay these say our account or config is wrong, not that the recipient is.
AUTH_REPLY_CODES = frozenset((530, 535, 538))
TEMPORARY_AUTH_CODE = 454      # RFC 4954: "temporary authentication failure"

# (relay name, host label, stage, text): stage is connect | greeting | ehlo | tls | auth
FailureHook = Callable[[str, str, str, str], None]


class RelayFailure(ConnectFailure):
    """One relay host could not be used; `stage` says where it failed."""

    def __init__(self, text: str, stage: str, code: int = 0, status: str = "4.4.1") -> None:
        super().__init__(text, code, status)
        self.stage = stage


class RelayConnection(Connection):
    """A session with one relay host. `mx_name` is "host:port", so events show which host (and
    which of its ports) took the mail when the primary failed over."""

    def __init__(self, smtp: aiosmtplib.SMTP, host: MxHost, address: str, source: Source, tls: bool,
                 settings: ClientSettings, relay: Relay, on_failure: FailureHook) -> None:
        super().__init__(smtp, host, address, source, tls, settings)
        self.relay = relay
        self.on_failure = on_failure

    async def send(self, job: Job, body: bytes, sender: str,
                   before_data: Awaitable[object] | None = None,
                   on_delivered: Callable[[list[Recipient]], None] | None = None,
                   peek: ReplyPeek | None = None, body_as_is: bool = False) -> list[RecipientResult]:
        # A 2xx is never rewritten below, so what `on_delivered` hears stays true.
        results = await super().send(job, body, sender, before_data, on_delivered, peek, body_as_is)
        if not any(r.code in AUTH_REPLY_CODES for r in results):
            return results
        first = next(r for r in results if r.code in AUTH_REPLY_CODES)
        self.on_failure(self.relay.name, self.mx.name, "auth", first.text)
        self.usable = False         # a fresh connection authenticates again
        return [_temporary_auth(r, self.relay.name) if r.code in AUTH_REPLY_CODES else r for r in results]


def _temporary_auth(result: RecipientResult, relay: str) -> RecipientResult:
    # The relay's own words go to the log (on_failure) but not into the result: the reply
    # classifier reads "authentication" as the sending domain's SPF/DKIM/DMARC trouble, and policyd
    # would act on that domain for what is our account's problem.
    return replace(result, code=TEMPORARY_AUTH_CODE, status="4.7.0",
                   text=f"{TEMPORARY_AUTH_CODE} 4.7.0 relay {relay} did not accept our login (it answered "
                        f"{result.code} {result.status}); mail kept for retry, see the MTA log")


def failure_reporter(count: Callable[[str, str, str], None]) -> FailureHook:
    """Counts a relay host's failure (relay, host, stage) and logs it; an authentication failure
    loudly, as only an operator can fix it."""
    def report(relay: str, host: str, stage: str, text: str) -> None:
        count(relay, host, stage)
        if stage == "auth":
            log.error("relay %s: authentication failed at %s: %s; mail is kept and retried: check the "
                      "relay's username and password", relay, host, text)
        else:
            log.warning("relay %s: host %s failed (%s): %s", relay, host, stage, text)
    return report


HOST_RESTS = 60.0   # seconds a relay host that failed to connect is tried after the others


class HostHealth:
    """Which relay hosts failed lately (pure, injected clock). A failed host is tried after the
    healthy ones for HOST_RESTS seconds, so a dead primary does not cost every new connection its
    connect timeout; it is never skipped, and it comes first again after its rest (or at once
    when every other host failed too)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._resting: dict[str, float] = {}       # host label -> until

    def failed(self, label: str) -> None:
        self._resting[label] = self.clock() + HOST_RESTS

    def worked(self, label: str) -> None:
        self._resting.pop(label, None)

    def order(self, hosts: tuple[RelayHost, ...]) -> list[RelayHost]:
        now = self.clock()
        rested = [h for h in hosts if self._resting.get(h.label, 0.0) <= now]
        return rested + [h for h in hosts if self._resting.get(h.label, 0.0) > now]


class Relays:
    """The configured relays, by pool and by site key; opens connections to them."""

    def __init__(self, relays: Mapping[str, Relay], pool_relay: Mapping[str, str],
                 on_failure: FailureHook | None = None, clock: Callable[[], float] = time.time) -> None:
        self.by_name = dict(relays)
        self.by_site = {r.site_key: r for r in relays.values()}
        self.pool_relay = {pool: name for pool, name in pool_relay.items() if name}
        self.on_failure = on_failure or (lambda *_args: None)
        self.health = HostHealth(clock)

    @classmethod
    def from_config(cls, sections: Mapping[str, RelaySection], pool_relay: Mapping[str, str],
                    on_failure: FailureHook | None = None, clock: Callable[[], float] = time.time) -> Relays:
        return cls({name: load_relay(name, s) for name, s in sections.items()}, pool_relay, on_failure, clock)

    def __bool__(self) -> bool:
        return bool(self.pool_relay)

    def for_pool(self, pool: str) -> Relay | None:
        name = self.pool_relay.get(pool)
        return self.by_name[name] if name else None

    def for_site(self, site_key: str) -> Relay | None:
        return self.by_site.get(site_key)

    @staticmethod
    def route(relay: Relay) -> Route:
        """A Route that never expires, naming the relay's hosts (in order) as its exchangers: the
        grant requests and feedback name them as a site's MX hosts, so policyd can recognise a
        relay as an ISP of its own by their names."""
        hosts = tuple(MxHost(h.name, i, ()) for i, h in enumerate(relay.hosts))
        return Route(relay.site_key, hosts, relay.site_key, False, float("inf"))

    async def connect(self, relay: Relay, source: Source, settings: ClientSettings) -> RelayConnection:
        return await connect_relay(relay, source, settings, self.on_failure, self.health)


async def connect_relay(relay: Relay, source: Source, settings: ClientSettings,
                        on_failure: FailureHook, health: HostHealth | None = None) -> RelayConnection:
    """The first host of `relay`, in order (hosts that failed lately last), that takes TLS, EHLO
    and AUTH as configured."""
    failures: list[RelayFailure] = []
    for host in health.order(relay.hosts) if health is not None else relay.hosts:
        try:
            conn = await _open(relay, host, source, settings, on_failure)
        except RelayFailure as failure:
            on_failure(relay.name, host.label, failure.stage, failure.text)
            failures.append(failure)
            if health is not None and failure.stage != "auth":    # a login problem is ours, not the host's
                health.failed(host.label)
            continue
        if health is not None:
            health.worked(host.label)
        return conn
    # An authentication failure says more than the connection errors around it: report it first.
    worst = next((f for f in failures if f.stage == "auth"), failures[-1])
    text = "; ".join(f.text for f in failures[-3:])
    raise ConnectFailure(f"relay {relay.name}: {text}", worst.code, worst.status)


async def _open(relay: Relay, host: RelayHost, source: Source, settings: ClientSettings,
                on_failure: FailureHook) -> RelayConnection:
    where = host.label
    smtp = aiosmtplib.SMTP(hostname=host.name, port=host.port, local_hostname=source.ehlo,
                           source_address=(source.address, 0) if source.address else None,
                           timeout=settings.connect_timeout, use_tls=host.tls == "implicit", start_tls=False,
                           tls_context=relay.tls_context if host.tls != "none" else None)
    stage = "connect"
    try:
        try:
            await smtp.connect()
        except aiosmtplib.SMTPConnectResponseError as exc:
            stage = "greeting"
            raise RelayFailure(f"{where} greeted with {reply_line(exc.code, exc.message)}", stage, exc.code) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if isinstance(exc.__cause__, ssl.SSLError) or isinstance(exc, ssl.SSLError):
                stage = "tls"
            raise RelayFailure(f"{where}: {_why(exc)}", stage) from None
        stage = "ehlo"
        await smtp.ehlo(timeout=settings.command_timeout)
        if host.tls == "starttls":
            stage = "tls"
            if not smtp.supports_extension("starttls"):
                raise RelayFailure(f"{where} does not offer STARTTLS (never sent in plain text)", stage)
            await smtp.starttls(timeout=settings.command_timeout)
            stage = "ehlo"
            await smtp.ehlo(timeout=settings.command_timeout)
        if relay.username:
            stage = "auth"
            if not smtp.supports_extension("auth"):
                raise RelayFailure(f"{where} does not offer AUTH", stage)
            await smtp.login(relay.username, relay.password, timeout=settings.command_timeout)
    except RelayFailure:
        smtp.close()
        raise
    except aiosmtplib.SMTPResponseException as exc:
        smtp.close()
        status = "4.7.0" if stage == "auth" else "4.4.1"
        raise RelayFailure(f"{where} refused {stage.upper()}: {reply_line(exc.code, exc.message)}", stage,
                           exc.code, status) from None
    except (aiosmtplib.SMTPException, ssl.SSLError, OSError, TimeoutError) as exc:
        smtp.close()
        raise RelayFailure(f"{where}: {stage} failed: {_why(exc)}", stage) from None
    peer = smtp.transport.get_extra_info("peername") if smtp.transport is not None else None
    address = str(peer[0]) if peer else host.name
    tls = host.tls != "none"
    return RelayConnection(smtp, MxHost(host.label, 0, (address,)), address, source, tls, settings,
                           relay=relay, on_failure=on_failure)


def _why(exc: BaseException) -> str:
    cause = exc.__cause__
    text = str(exc) or type(exc).__name__
    if isinstance(cause, ssl.SSLError):
        text = f"TLS failed: {cause.reason or cause}"
    return text
