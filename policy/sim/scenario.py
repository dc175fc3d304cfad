"""A simulation scenario: TOML loaded once into typed dataclasses, validated with the bad key named.

Tables: [simulation] (seed, days, step), [audience], [isps.NAME] (overrides of the built-in ISP
models), [[sources]], [[streams]], [[incidents]] and [policy] (engine settings layered over the
policyd config, see policy.sim.policy_setup). Durations accept "90s", "15m", "4h", "2d".
`base = "other.toml"` starts from another scenario (relative to this file): tables merge key by
key, anything else (a list of [[incidents]], say) replaces the base's.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from typing import Any

from policy.sim.isp_defaults import DEFAULT_ISPS
from policy.sim.replies import split_reply
from warmup_base.configload import ConfigError, Duration, build, merge_tables, read_toml

NEWSLETTER = "newsletter"        # the whole audience every day, most engaged first
TRANSACTIONAL = "transactional"  # a steady flow to active users, all day
OUTREACH = "outreach"            # new prospects per sender mailbox per day
STREAM_KINDS = (NEWSLETTER, TRANSACTIONAL, OUTREACH)

BAD_LIST = "bad_list"
COMPLAINT_BURST = "complaint_burst"
ISP_THROTTLE = "isp_throttle"
BLOCKLIST = "blocklist"
INCIDENT_KINDS = (BAD_LIST, COMPLAINT_BURST, ISP_THROTTLE, BLOCKLIST)
ORDERS = ("engagement", "random")
REPLY_KEYS = ("accept_reply", "throttle_reply", "block_reply", "blocklist_reply", "unknown_user_reply")


@dataclass
class SimulationSettings:
    seed: int = 1
    days: int = 30
    step: Duration = 60             # clock step; the buckets' burst (2 min by default) must exceed it
    start: str = "2025-03-03"       # UTC date of simulated day 1
    state: str = "memory"           # policy store: "memory", or "sqlite" (a file in a temp directory)
    max_age: Duration = 5 * 86400   # a deferred message expires after this long (the MTA's [queue])
    retry_base: Duration = 60
    retry_max: Duration = 4 * 3600
    feedback_interval: Duration = 600  # outcomes other than push-back are reported this far apart at most


@dataclass
class AudienceSettings:
    size: int = 100000
    isp_mix: dict[str, float] = field(default_factory=lambda: {"google": 0.45, "yahoo": 0.15,
                                                               "microsoft": 0.2, "other": 0.2})
    engagement_mean: float = 0.35          # engagement score per recipient: Beta with this mean ...
    engagement_concentration: float = 2.0  # ... and this a+b (small: a wide spread of engagement)
    invalid_share: float = 0.01            # addresses that do not exist (hard bounce)
    inactive_share: float = 0.1            # valid recipients who never engaged: score 0, like the invalid
    complainer_share: float = 0.003        # recipients who press "spam", more likely the less engaged
    complaint_probability: float = 0.1     # chance a complainer complains about one marketing message
    order: str = "engagement"              # who goes first while volume is limited: engagement | random


@dataclass
class IspModelSettings:
    """One modelled mailbox provider: how its reputation of each source IP moves and what it answers."""

    mx: str = ""                     # an MX host of its site; policyd recognises the ISP from it
    domain: str = ""                 # the recipients' domain (the MTA's site)
    initial_reputation: float = 0.3  # a new IP's reputation (0..1); a punished one drifts back up to it
    min_hourly: int = 20             # hourly volume it assumes for an IP with no history
    steady_reputation: float = 0.2   # at this reputation it takes just the IP's remembered hourly volume ...
    surge: float = 1.5               # ... and (reputation / steady_reputation) ** surge times it in general
    volume_memory: Duration = 86400  # half-life of the remembered busiest hour
    block_floor: float = 0.1         # below this reputation every attempt is blocked
    gain: float = 0.01               # reputation gained per hour of usual volume, per point of engagement
    neutral_engagement: float = 0.1  # engagement below this costs reputation instead of earning it
    bounce_weight: float = 0.3       # reputation lost per hard bounce, per hour of usual volume
    complaint_weight: float = 1.7    # reputation lost per complaint, per hour of usual volume
    drift: float = 0.02              # per hour, a reputation below the initial one recovers this share
    bounce_throttle: float = 0.1     # hard-bounce share within a clock hour that makes it defer the IP ...
    bounce_throttle_min: int = 20    # ... once at least this many bounced in that hour; 0 = never
    complaint_throttle: float = 0.005  # complaints per message within a clock hour that make it defer ...
    complaint_throttle_min: int = 5  # ... once at least this many complained in that hour; 0 = never
    feedback_loop: bool = True       # sends complaint reports (ARF) per message
    uses_blocklists: bool = True     # refuses IPs listed on public blocklists
    async_bounce_share: float = 0.0  # unknown users accepted first and bounced later by DSN
    bounce_delay: Duration = 900     # mean delay of such a DSN
    complaint_delay: Duration = 7200  # mean delay between delivery and the complaint
    accept_reply: str = ""
    throttle_reply: str = ""
    block_reply: str = ""
    blocklist_reply: str = ""
    unknown_user_reply: str = ""


@dataclass
class SourceModel:
    name: str                        # the MTA's source name (policyd's IP pairs use it)
    address: str = ""                # quoted in the ISPs' replies
    reputation: float = -1.0         # an already warm IP's starting reputation; < 0: the ISP's initial


@dataclass
class StreamSettings:
    name: str
    kind: str = NEWSLETTER
    sources: list[str] = field(default_factory=list)   # the egress pool
    sending_domain: str = ""         # outreach: "" = each mailbox's own domain
    tenant: str = ""
    start: Duration = 0              # newsletter: time of day the day's campaign is queued
    daily: int = 0                   # transactional: messages a day; outreach: new prospects per mailbox
    mailboxes: list[str] = field(default_factory=list)  # outreach: sender addresses ...
    mailbox_domains: list[str] = field(default_factory=list)  # ... or generated: this many per domain
    mailboxes_per_domain: int = 0
    complaint_factor: float = 1.0    # complaints scale: receipts draw far fewer than newsletters
    campaign: str = ""               # the campaign tag its mail carries (grant asks and feedback)


@dataclass
class IncidentSettings:
    kind: str
    day: int                         # simulated day, 1 = the first
    at: Duration = 0                 # time of day
    duration: Duration = 3600        # complaint_burst, isp_throttle, blocklist
    isp: str = ""                    # complaint_burst ("" = all), isp_throttle
    source: str = ""                 # blocklist
    stream: str = ""                 # bad_list: the stream that mails the list at once ("" = first newsletter)
    count: int = 0                   # bad_list: addresses imported
    invalid_share: float = 0.3       # bad_list
    complainer_share: float = 0.02   # bad_list
    engagement_mean: float = 0.05    # bad_list
    campaign: str = ""               # bad_list: the import's own campaign tag ("" = the stream's mail)
    complaint_rate: float = 0.01     # complaint_burst: extra chance of a complaint per delivered message


@dataclass
class Scenario:
    simulation: SimulationSettings = field(default_factory=SimulationSettings)
    audience: AudienceSettings = field(default_factory=AudienceSettings)
    isps: dict[str, IspModelSettings] = field(default_factory=dict)
    sources: list[SourceModel] = field(default_factory=list)
    streams: list[StreamSettings] = field(default_factory=list)
    incidents: list[IncidentSettings] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)   # engine settings over the policyd config
    path: str = ""

    def stream(self, name: str) -> StreamSettings:
        return next(s for s in self.streams if s.name == name)


def load_scenario(path: str) -> Scenario:
    return scenario_from_dict(_read_with_base(path), path)


def _read_with_base(path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    path = os.path.abspath(path)
    if path in seen:
        raise ConfigError(f"{seen[-1]}: base: {path} is its own base")
    raw = read_toml(path, "scenario")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected a file name")
    full = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
    return merge_tables(_read_with_base(full, (*seen, path)), raw)


def scenario_from_dict(raw: dict[str, Any], path: str = "") -> Scenario:
    """Builds and validates a scenario; the built-in ISP models are the base of [isps]."""
    raw = dict(raw)
    isps_raw = raw.pop("isps", {})
    if not isinstance(isps_raw, dict):
        raise ConfigError("isps: expected a table of ISP models")
    policy_raw = raw.pop("policy", {})
    if not isinstance(policy_raw, dict):
        raise ConfigError("policy: expected a table of engine settings")
    scenario = build(Scenario, raw, "")
    merged = {name: dict(table) for name, table in DEFAULT_ISPS.items()}
    for name, table in isps_raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"isps.{name}: expected a table")
        # A new ISP takes the long tail's behaviour and wordings, but names its own MX and domain.
        base = merged.get(name) or {k: v for k, v in DEFAULT_ISPS["other"].items() if k not in ("mx", "domain")}
        merged[name] = {**base, **table}
    scenario.isps = {name: build(IspModelSettings, table, f"isps.{name}") for name, table in merged.items()}
    scenario.policy = policy_raw
    scenario.path = path
    _expand_mailboxes(scenario)
    validate(scenario)
    return scenario


def _expand_mailboxes(s: Scenario) -> None:
    for stream in s.streams:
        if stream.kind == OUTREACH and not stream.mailboxes:
            stream.mailboxes = [f"sender{i + 1}@{domain}" for domain in stream.mailbox_domains
                                for i in range(stream.mailboxes_per_domain)]
        stream.mailboxes = [m.lower() for m in stream.mailboxes]


def _share(key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key}: must be a share between 0 and 1, got {value}")


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{key}: must be positive, got {value}")


def validate(s: Scenario) -> None:
    sim, aud = s.simulation, s.audience
    _positive("simulation.days", sim.days)
    _positive("simulation.step", sim.step)
    if sim.step > 3600:
        raise ConfigError("simulation.step: at most 1h, or leases and hourly ISP budgets blur together")
    if abs(round(86400 / sim.step) * sim.step - 86400) > 1e-6:
        raise ConfigError(f"simulation.step: must divide a day evenly, got {sim.step:g}s")
    if sim.state not in ("memory", "sqlite"):
        raise ConfigError(f"simulation.state: memory or sqlite, got {sim.state!r}")
    _positive("simulation.max_age", sim.max_age)
    if sim.feedback_interval > 3600:
        raise ConfigError("simulation.feedback_interval: at most 1h (health is kept in hourly slots)")
    _positive("simulation.retry_base", sim.retry_base)
    if sim.retry_max < sim.retry_base:
        raise ConfigError("simulation.retry_max: must be at least simulation.retry_base")
    _start_epoch(sim.start)
    if aud.size < 0:
        raise ConfigError(f"audience.size: must not be negative, got {aud.size}")
    if not aud.isp_mix or any(v < 0 for v in aud.isp_mix.values()) or sum(aud.isp_mix.values()) <= 0:
        raise ConfigError("audience.isp_mix: needs non-negative shares that add up to more than 0")
    for name in aud.isp_mix:
        if name not in s.isps:
            raise ConfigError(f"audience.isp_mix.{name}: no ISP model of that name (known: {', '.join(s.isps)})")
    for key in ("engagement_mean", "invalid_share", "inactive_share", "complainer_share", "complaint_probability"):
        _share(f"audience.{key}", getattr(aud, key))
    if not 0 < aud.engagement_mean < 1:
        raise ConfigError("audience.engagement_mean: must be between 0 and 1 (exclusive)")
    _positive("audience.engagement_concentration", aud.engagement_concentration)
    if aud.order not in ORDERS:
        raise ConfigError(f"audience.order: one of {', '.join(ORDERS)}, got {aud.order!r}")
    for name, isp in s.isps.items():
        _validate_isp(f"isps.{name}", isp)
    names: set[str] = set()
    for i, src in enumerate(s.sources):
        if not src.name or src.name in names or "|" in src.name:
            raise ConfigError(f"sources[{i}].name: empty, duplicate or containing '|': {src.name!r}")
        names.add(src.name)
        if src.reputation > 1:
            raise ConfigError(f"sources[{i}].reputation: at most 1, got {src.reputation}")
    if not s.streams:
        raise ConfigError("streams: needs at least one [[streams]] table")
    stream_names: set[str] = set()
    for i, stream in enumerate(s.streams):
        _validate_stream(f"streams[{i}]", stream, names, stream_names)
    for i, incident in enumerate(s.incidents):
        _validate_incident(f"incidents[{i}]", incident, s, names)


def _validate_isp(key: str, isp: IspModelSettings) -> None:
    if not isp.mx:
        raise ConfigError(f"{key}.mx: needs an MX host name (policyd recognises the ISP from it)")
    if not isp.domain:
        raise ConfigError(f"{key}.domain: needs the recipients' domain")
    for name in ("initial_reputation", "block_floor", "bounce_throttle", "complaint_throttle", "async_bounce_share",
                 "drift"):
        _share(f"{key}.{name}", getattr(isp, name))
    for name in ("min_hourly", "volume_memory", "steady_reputation", "bounce_delay", "complaint_delay"):
        _positive(f"{key}.{name}", getattr(isp, name))
    for name in ("surge", "gain", "bounce_weight", "complaint_weight", "bounce_throttle_min",
                 "complaint_throttle_min"):
        if getattr(isp, name) < 0:
            raise ConfigError(f"{key}.{name}: must not be negative")
    for name in REPLY_KEYS:
        split_reply(getattr(isp, name), f"{key}.{name}")
    if not 200 <= split_reply(isp.accept_reply, f"{key}.accept_reply")[0] < 300:
        raise ConfigError(f"{key}.accept_reply: must be a 2xx reply")
    for name in REPLY_KEYS[1:]:
        if split_reply(getattr(isp, name), f"{key}.{name}")[0] < 400:
            raise ConfigError(f"{key}.{name}: must be a 4xx or 5xx reply")


def _validate_stream(key: str, stream: StreamSettings, sources: set[str], seen: set[str]) -> None:
    if not stream.name or stream.name in seen:
        raise ConfigError(f"{key}.name: empty or duplicate: {stream.name!r}")
    seen.add(stream.name)
    if stream.kind not in STREAM_KINDS:
        raise ConfigError(f"{key}.kind: one of {', '.join(STREAM_KINDS)}, got {stream.kind!r}")
    if not stream.sources:
        raise ConfigError(f"{key}.sources: needs at least one source name")
    for j, name in enumerate(stream.sources):
        if name not in sources:
            raise ConfigError(f"{key}.sources[{j}]: no [[sources]] named {name!r}")
    if stream.kind != OUTREACH and not stream.sending_domain:
        raise ConfigError(f"{key}.sending_domain: required for a {stream.kind} stream")
    if stream.kind in (TRANSACTIONAL, OUTREACH):
        _positive(f"{key}.daily", stream.daily)
    if stream.kind == OUTREACH:
        if not stream.mailboxes:
            raise ConfigError(f"{key}.mailboxes: an outreach stream needs mailboxes (or mailbox_domains "
                              "and mailboxes_per_domain)")
        for j, box in enumerate(stream.mailboxes):
            if box.count("@") != 1 or box.startswith("@") or box.endswith("@"):
                raise ConfigError(f"{key}.mailboxes[{j}]: not an address: {box!r}")
    if not 0 <= stream.start < 86400:
        raise ConfigError(f"{key}.start: a time of day under 24h, got {stream.start}")
    if stream.complaint_factor < 0:
        raise ConfigError(f"{key}.complaint_factor: must not be negative")
    if "#" in stream.name:
        raise ConfigError(f"{key}.name: no '#' in a stream name, got {stream.name!r}")


def _validate_incident(key: str, inc: IncidentSettings, s: Scenario, sources: set[str]) -> None:
    if inc.kind not in INCIDENT_KINDS:
        raise ConfigError(f"{key}.kind: one of {', '.join(INCIDENT_KINDS)}, got {inc.kind!r}")
    if not inc.day >= 1:
        raise ConfigError(f"{key}.day: simulated days count from 1, got {inc.day}")
    if not 0 <= inc.at < 86400:
        raise ConfigError(f"{key}.at: a time of day under 24h, got {inc.at}")
    _positive(f"{key}.duration", inc.duration)
    if inc.isp and inc.isp not in s.isps:
        raise ConfigError(f"{key}.isp: no ISP model named {inc.isp!r}")
    if inc.kind == ISP_THROTTLE and not inc.isp:
        raise ConfigError(f"{key}.isp: an isp_throttle incident names the ISP")
    if inc.kind == BLOCKLIST and inc.source not in sources:
        raise ConfigError(f"{key}.source: no [[sources]] named {inc.source!r}")
    if inc.kind == BAD_LIST:
        _positive(f"{key}.count", inc.count)
        newsletters = [st.name for st in s.streams if st.kind == NEWSLETTER]
        if inc.stream and inc.stream not in newsletters:
            raise ConfigError(f"{key}.stream: no newsletter stream named {inc.stream!r}")
        if not inc.stream and not newsletters:
            raise ConfigError(f"{key}.stream: a bad list is mailed by a newsletter stream; there is none")
        if not 0 < inc.engagement_mean < 1:
            raise ConfigError(f"{key}.engagement_mean: must be between 0 and 1 (exclusive)")
        if "#" in inc.campaign:
            raise ConfigError(f"{key}.campaign: no '#' in a campaign tag, got {inc.campaign!r}")
    for name in ("invalid_share", "complainer_share", "complaint_rate"):
        _share(f"{key}.{name}", getattr(inc, name))


def _start_epoch(date: str) -> float:
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise ConfigError(f"simulation.start: expected a date such as 2025-03-03, got {date!r}") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def start_epoch(s: Scenario) -> float:
    """Midnight UTC of simulated day 1."""
    return _start_epoch(s.simulation.start)
