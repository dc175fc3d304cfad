"""A small authoritative DNS server for tests: real UDP and TCP on a loopback address.

It runs its own event loop in a background thread, so async tests, sync tests and daemons started
as subprocesses can all point a resolver at it. Zone data and per-name behaviours can be changed
at any time from any thread; every question is logged so tests can see what was (not) asked.

    with DnsTestServer() as dns_server:
        dns_server.mx("example.com", (10, "mx1.example.com"), (20, "mx2.example.com"))
        dns_server.address("mx1.example.com", "127.0.0.10", "::1")
        dns_server.servfail("broken.example")
        resolver = MxResolver(ResolverConfig(nameservers=[dns_server.nameserver]))
        ...
        assert ("example.com", "MX") in dns_server.queries

Names not in the data get NXDOMAIN; names with data but not of the asked type get NODATA. Negative
answers carry the SOA of the closest enclosing name that has one (see `soa`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import struct
import threading
from collections.abc import Callable
from typing import Self, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

_UDP_PLAIN_LIMIT = 512          # RFC 1035 limit for a query without EDNS
_MAX_CNAME_HOPS = 8


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def _short(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


class DnsTestServer:
    """Authoritative test DNS server on `host` (any 127.x.y.z) and `port` (0: ephemeral)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("the test DNS server only listens on loopback addresses")
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        # name -> rdtype -> (ttl, rdata texts)
        self._records: dict[dns.name.Name, dict[int, tuple[int, list[str]]]] = {}
        self._behaviour: dict[dns.name.Name, tuple[str, float]] = {}
        self._log: list[tuple[str, str, str]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closers: list[Callable[[], None]] = []

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ready, failure),
                                        name=f"dns-test-server-{self.host}", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def nameserver(self) -> str:
        """"host:port", as `ResolverConfig.nameservers` wants it."""
        return f"{self.host}:{self.port}"

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:            # reported to start()'s caller
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            for close in self._closers:
                close()
            self._closers.clear()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        # UDP and TCP must share one port; with an ephemeral port the TCP side can find it taken.
        for _attempt in range(20):
            udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self),
                                                         local_addr=(self.host, self.port))
            port = udp.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError:
                udp.close()
                if self.port:
                    raise
                continue
            self.port = port
            self._closers = [udp.close, tcp.close]
            return
        raise OSError("could not bind UDP and TCP to one port")

    # -- zone data --------------------------------------------------------------------------------

    def add(self, name: str, rdtype: str, *values: str, ttl: int = 300) -> None:
        """Adds records in zone-file text form, e.g. add("example.com", "MX", "10 mx.example.com.")."""
        key, code = _name(name), dns.rdatatype.from_text(rdtype)
        for value in values:        # fail here, in the test, not later in the server thread
            dns.rrset.from_text(key, ttl, "IN", code, value)
        with self._lock:
            _old_ttl, old_values = self._records.setdefault(key, {}).get(code, (ttl, []))
            self._records[key][code] = (ttl, [*old_values, *values])

    def set(self, name: str, rdtype: str, *values: str, ttl: int = 300) -> None:
        """Replaces the records of one type (no values: removes them)."""
        self.remove(name, rdtype)
        if values:
            self.add(name, rdtype, *values, ttl=ttl)

    def remove(self, name: str, rdtype: str | None = None) -> None:
        """Removes one type of records of `name`, or the whole name (then it is NXDOMAIN)."""
        key = _name(name)
        with self._lock:
            if rdtype is None:
                self._records.pop(key, None)
            elif key in self._records:
                self._records[key].pop(dns.rdatatype.from_text(rdtype), None)

    def mx(self, domain: str, *hosts: tuple[int, str], ttl: int = 300) -> None:
        """Sets the MX records of `domain` from (preference, host name) pairs."""
        self.set(domain, "MX", *(f"{preference} {_name(host)}" for preference, host in hosts), ttl=ttl)

    def null_mx(self, domain: str, ttl: int = 300) -> None:
        """RFC 7505: "this domain accepts no mail"."""
        self.set(domain, "MX", "0 .", ttl=ttl)

    def address(self, name: str, *addresses: str, ttl: int = 300) -> None:
        """Sets A and/or AAAA records of `name`, each address going to the type of its family."""
        ipv4 = [a for a in addresses if ipaddress.ip_address(a).version == 4]
        ipv6 = [a for a in addresses if ipaddress.ip_address(a).version == 6]
        self.set(name, "A", *ipv4, ttl=ttl)
        self.set(name, "AAAA", *ipv6, ttl=ttl)

    def txt(self, name: str, *texts: str, ttl: int = 300) -> None:
        """Sets TXT records, one per text (long texts are split into 255-byte strings)."""
        self.set(name, "TXT", *(_txt_rdata(text) for text in texts), ttl=ttl)

    def ptr(self, ip: str, *names: str, ttl: int = 300) -> None:
        """Sets the reverse DNS of an address."""
        reverse = dns.reversename.from_address(ip).to_text()
        self.set(reverse, "PTR", *(_name(name).to_text() for name in names), ttl=ttl)

    def cname(self, name: str, target: str, ttl: int = 300) -> None:
        self.set(name, "CNAME", _name(target).to_text(), ttl=ttl)

    def soa(self, zone: str, minimum: int = 300, ttl: int = 300) -> None:
        """Sets a SOA; negative answers below `zone` then live min(ttl, minimum) seconds."""
        zone_name = _name(zone)
        mname = dns.name.Name(("ns", *zone_name.labels)).to_text()
        rname = dns.name.Name(("hostmaster", *zone_name.labels)).to_text()
        self.set(zone, "SOA", f"{mname} {rname} 1 3600 600 86400 {minimum}", ttl=ttl)

    # -- behaviours -------------------------------------------------------------------------------

    def servfail(self, name: str) -> None:
        """Every question about `name` gets SERVFAIL."""
        self._set_behaviour(name, "servfail")

    def refuse(self, name: str) -> None:
        """Every question about `name` gets REFUSED."""
        self._set_behaviour(name, "refuse")

    def timeout(self, name: str) -> None:
        """Questions about `name` are never answered."""
        self._set_behaviour(name, "timeout")

    def delay(self, name: str, seconds: float) -> None:
        """Answers about `name` are sent after `seconds`."""
        self._set_behaviour(name, "delay", seconds)

    def behave_normally(self, name: str) -> None:
        with self._lock:
            self._behaviour.pop(_name(name), None)

    def _set_behaviour(self, name: str, behaviour: str, seconds: float = 0.0) -> None:
        with self._lock:
            self._behaviour[_name(name)] = (behaviour, seconds)

    def reset(self) -> None:
        """Forgets all data, behaviours and the query log (for a server shared by tests)."""
        with self._lock:
            self._records.clear()
            self._behaviour.clear()
            self._log.clear()

    # -- query log --------------------------------------------------------------------------------

    @property
    def queries(self) -> list[tuple[str, str]]:
        """Every question asked so far as (name, type), e.g. ("example.com", "MX"), oldest first."""
        with self._lock:
            return [(name, rdtype) for name, rdtype, _transport in self._log]

    def queries_over(self, transport: str) -> list[tuple[str, str]]:
        """Questions that came over "udp" or "tcp"."""
        with self._lock:
            return [(name, rdtype) for name, rdtype, via in self._log if via == transport]

    def count(self, name: str, rdtype: str) -> int:
        return self.queries.count((_short(_name(name)), rdtype.upper()))

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    # -- answering (server thread) ----------------------------------------------------------------

    def _answer(self, wire: bytes, transport: str) -> tuple[bytes | None, float]:
        """(response wire or None for silence, delay in seconds) for one query."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None, 0.0            # not worth answering: the client's bug, not ours to test
        response = dns.message.make_response(query)
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire(), 0.0
        question = query.question[0]
        with self._lock:
            self._log.append((_short(question.name), dns.rdatatype.to_text(question.rdtype), transport))
            behaviour, seconds = self._behaviour.get(question.name, ("", 0.0))
            if behaviour == "timeout":
                return None, 0.0
            if behaviour == "servfail":
                response.set_rcode(dns.rcode.SERVFAIL)
            elif behaviour == "refuse":
                response.set_rcode(dns.rcode.REFUSED)
            else:
                response.flags |= dns.flags.AA
                self._fill_answer(response, question.name, question.rdtype)
        limit = 65535 if transport == "tcp" else max(_UDP_PLAIN_LIMIT, query.payload if query.edns >= 0
                                                     else _UDP_PLAIN_LIMIT)
        try:
            return response.to_wire(max_size=limit), seconds
        except dns.exception.TooBig:
            # Too big for UDP: say so (TC) with an empty answer, so the client retries over TCP.
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            return truncated.to_wire(), seconds

    def _fill_answer(self, response: dns.message.Message, qname: dns.name.Name, rdtype: int) -> None:
        """Answer, following CNAMEs inside our own data; caller holds the lock."""
        name = qname
        for _hop in range(_MAX_CNAME_HOPS):
            records = self._records.get(name)
            if records is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                break
            if rdtype in records:
                response.answer.append(self._rrset(name, rdtype, *records[rdtype]))
                return
            cname = records.get(dns.rdatatype.CNAME)
            if cname is None or rdtype == dns.rdatatype.CNAME:
                break               # NODATA
            response.answer.append(self._rrset(name, dns.rdatatype.CNAME, *cname))
            name = _name(cname[1][0])
        soa = self._closest_soa(name)
        if soa is not None:
            response.authority.append(soa)

    def _closest_soa(self, name: dns.name.Name) -> dns.rrset.RRset | None:
        while True:
            records = self._records.get(name, {})
            if dns.rdatatype.SOA in records:
                return self._rrset(name, dns.rdatatype.SOA, *records[dns.rdatatype.SOA])
            if name == dns.name.root:
                return None
            name = name.parent()

    @staticmethod
    def _rrset(name: dns.name.Name, rdtype: int, ttl: int, values: list[str]) -> dns.rrset.RRset:
        return dns.rrset.from_text_list(name, ttl, dns.rdataclass.IN, rdtype, values)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                wire, delay = self._answer(await reader.readexactly(length), "tcp")
                if wire is None:
                    continue        # silence; the client gives up on its own timeout
                if delay:
                    await asyncio.sleep(delay)
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsTestServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's UDP transport does not subclass DatagramTransport, hence the cast.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        wire, delay = self._server._answer(data, "udp")
        if wire is None or self._transport is None:
            return
        if delay:
            asyncio.get_running_loop().call_later(delay, self._transport.sendto, wire, addr)
        else:
            self._transport.sendto(wire, addr)


def _txt_rdata(text: str) -> str:
    """Zone-file text of one TXT record, split into strings of at most 255 bytes."""
    data = text.encode()
    chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
    return " ".join('"' + "".join(_escape(byte) for byte in chunk) + '"' for chunk in chunks)


def _escape(byte: int) -> str:
    if byte in (0x22, 0x5C) or not 0x20 <= byte < 0x7F:
        return f"\\{byte:03d}"
    return chr(byte)

