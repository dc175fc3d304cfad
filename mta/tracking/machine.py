"""Tell machine opens and clicks from people's: pure rules, an injected clock.

A young IP is judged by how people engage, so opens fetched by privacy proxies and clicks made by
link scanners must not count as engagement. They are still recorded (with `machine: true`), since
an operator wants to see them. How each is recognised:

- Apple Mail Privacy Protection loads every image of a message soon after delivery, from Apple's
  network (17.0.0.0/8) and with a bare `Mozilla/5.0` user agent: an open from there, or with that
  agent, is a privacy-proxy prefetch.
- Security gateways and link scanners (Microsoft Defender Safe Links, Mimecast, Proofpoint,
  Barracuda, ...) follow the links of a message within seconds of its delivery, often every link
  at once, with a HEAD request, or with a library's or a scanner's user agent. So a click is a
  machine's if it is a HEAD, if its agent names a scanner, a bot or an HTTP library, if it comes
  within `fast_click_seconds` of delivery, or if it is the third (or later) distinct link of the
  same message and recipient within `burst_seconds`.

Mail clients' image proxies that fetch when a person opens (Gmail's GoogleImageProxy, Yahoo's)
count as real opens.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["ClickBursts", "MachineRules", "Verdict", "judge_click", "judge_open"]

_APPLE = ipaddress.ip_network("17.0.0.0/8")
_BARE_AGENT = "mozilla/5.0"
_SCANNER_WORDS = (
    "bot", "crawler", "spider", "scanner", "preview", "barracuda", "mimecast", "proofpoint", "symantec",
    "trendmicro", "forcepoint", "fortinet", "sophos", "safelinks", "cisco", "ironport", "zscaler",
    "python-requests", "python-urllib", "aiohttp", "curl/", "wget/", "go-http-client", "java/", "okhttp",
    "libwww", "httpclient", "headlesschrome", "phantomjs",
)


@dataclass(frozen=True, slots=True)
class MachineRules:
    fast_click_seconds: float = 10.0
    burst_seconds: float = 5.0
    burst_links: int = 3


@dataclass(frozen=True, slots=True)
class Verdict:
    machine: bool
    why: str = ""           # apple_privacy_proxy, scanner_agent, head_request, fast_click, link_burst


HUMAN = Verdict(False)


def _is_apple(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in _APPLE
    except ValueError:
        return False


def _scanner_agent(agent: str) -> bool:
    lowered = agent.lower()
    return not lowered or any(word in lowered for word in _SCANNER_WORDS)


def judge_open(*, user_agent: str, client_ip: str, method: str = "GET") -> Verdict:
    if method.upper() == "HEAD":
        return Verdict(True, "head_request")
    if _is_apple(client_ip) or user_agent.strip().lower() == _BARE_AGENT:
        return Verdict(True, "apple_privacy_proxy")
    if "googleimageproxy" in user_agent.lower() or "yahoomailproxy" in user_agent.lower():
        return HUMAN
    if _scanner_agent(user_agent):
        return Verdict(True, "scanner_agent")
    return HUMAN


def judge_click(*, user_agent: str, client_ip: str, now: float, sent_at: float, other_links_recently: int,
                method: str = "GET", rules: MachineRules = MachineRules()) -> Verdict:
    """`sent_at`: delivery time if known, else acceptance; `other_links_recently`: distinct other links of
    this message and recipient clicked within `rules.burst_seconds` before now."""
    if method.upper() == "HEAD":
        return Verdict(True, "head_request")
    if _scanner_agent(user_agent):
        return Verdict(True, "scanner_agent")
    if 0 <= now - sent_at < rules.fast_click_seconds:
        return Verdict(True, "fast_click")
    if other_links_recently + 1 >= rules.burst_links:
        return Verdict(True, "link_burst")
    return HUMAN


class ClickBursts:
    """Recent clicks per (message, recipient), bounded: how many other links were clicked just now."""

    def __init__(self, window: float = MachineRules.burst_seconds, capacity: int = 100_000) -> None:
        self.window = window
        self.capacity = capacity
        self._recent: OrderedDict[tuple[str, str], list[tuple[float, str]]] = OrderedDict()

    def note(self, queue_id: str, recipient: str, url: str, now: float) -> int:
        """Records this click; returns the number of distinct other links clicked within the window."""
        key = (queue_id, recipient)
        clicks = [(t, u) for t, u in self._recent.pop(key, []) if now - t <= self.window]
        others = len({u for _t, u in clicks if u != url})
        clicks.append((now, url))
        self._recent[key] = clicks
        while len(self._recent) > self.capacity:
            self._recent.popitem(last=False)
        return others
