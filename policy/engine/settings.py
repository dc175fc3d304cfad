"""What the engine is told by the operator: plain dataclasses, built from TOML by policy.config.

These types belong to the engine (it reads nothing else), so the simulator can build them in
code as easily as the daemon loads them from a file. `Duration` is a float of seconds that the
shared loader also accepts as "15m", "4h" or "2d".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from warmup_base.configload import Duration

DAY = 86400.0


@dataclass
class IspSettings:
    """One mailbox provider: how to recognise it and how gently to treat it."""

    mx: list[str] = field(default_factory=list)   # glob patterns on MX host names, lower-case
    max_connections: int = 5                      # per (site, source) in a lease
    messages_per_connection: int = 100
    warmup: bool = True                           # false: no warm-up buckets, connection limits only
    ip_schedule: str = ""                         # "" = [warmup] ip_schedule
    domain_schedule: str = ""                     # "" = [warmup] domain_schedule


@dataclass
class ScheduleSettings:
    """Daily volume by warm-up day (index 0 = first day); after the last day the last value holds."""

    days: list[int] = field(default_factory=list)


@dataclass
class WarmupSettings:
    ip_schedule: str = "default"          # per (source IP, ISP)
    domain_schedule: str = "default"      # per (sending domain, ISP); "" = no domain buckets
    day_length: Duration = DAY  # shorten only for tests and demos; windows scale with it
    day_start: Duration = 0     # UTC time of day at which a warm-up day begins
    window_start: Duration = 0  # sending window, measured from day_start (on a 24h day)
    window_end: Duration = DAY
    burst: Duration = 120       # bucket size: this many seconds' worth of the rate
    min_burst: int = 1                    # ... but at least this many messages
    # A bucket's rate catches up with the day: (today's volume - used) / the window's time left,
    # at most `catch_up` times the even rate, so a late start or an hour lost to a throttle
    # is made up over the rest of the day instead of lost. 1 = no catch-up.
    catch_up: float = 2.0
    # A sending domain's (domain, ISP) volume is its schedule's volume times the number of warm-up
    # sources of the pool it is sent over ("sources"), or the schedule's volume as it is ("fixed").
    domain_volume: str = "sources"
    # Advancement gates: a day advances only when yesterday was used, delivered and judged on
    # enough mail (at least [rules] min_sample messages, or the usage gate's share of a smaller
    # day's volume), besides being healthy.
    advance_min_usage: float = 0.8        # at least this share of the day's volume sent
    advance_min_delivered: float = 0.9    # at least this share of what was sent accepted
    # Re-warming: a pair that sent nothing for this long steps back in its schedule.
    rewarm_after: Duration = 30 * DAY
    rewarm_rollback_days: int = 7


@dataclass
class LeaseSettings:
    ttl: Duration = 30          # a lease is valid this long
    max_messages: int = 500               # at most this many messages in one lease
    idle_retry: Duration = 15   # retry hint when nothing can be said (operator pause): a resume acts this soon


@dataclass
class SourceSettings:
    """A source the MTA sends from; `name` is the MTA's [[egress.sources]] name."""

    name: str
    schedule: str = ""                    # "" = the ISP's or [warmup] ip_schedule
    start_day: int = 0                    # an already warm IP may start later in the schedule
    weight: int = 1                       # share of unlimited traffic, like the MTA's egress weight


@dataclass
class PoolSettings:
    """An egress pool as policyd sees it (the MTA's [egress.pools] name).

    `overflow` names another pool, typically of warm IPs, that takes what the pool's own sources
    cannot send: the part of the lane's backlog beyond what their daily caps still allow today,
    and everything while they are paused or backing off for longer than `overflow_after`.
    """

    sources: list[str] = field(default_factory=list)   # needed for a pool used as an overflow
    overflow: str = ""
    overflow_after: Duration = 600


@dataclass
class DomainSettings:
    name: str
    schedule: str = ""
    start_day: int = 0


@dataclass
class MailboxRule:
    """Sender mailboxes matching `match` (a glob on the envelope sender) get their own bucket."""

    match: str
    schedule: str = "outreach"
    start_day: int = 0


@dataclass
class TenantSettings:
    daily_quota: int = 0                  # messages per warm-up day; 0 = no quota


@dataclass
class RuleSettings:
    """Thresholds of the automatic rules; every one is an operator's choice, not a constant."""

    health_window: Duration = DAY   # rolling window for bounce and complaint rates
    health_slots: int = 24                    # the window is kept in this many slots
    recent_window: Duration = 7200            # rates are judged over this last stretch too
    min_sample: int = 30                      # rates are judged only over at least this many messages ...
    min_events: int = 2                       # ... and this many events: one complaint is not a rate
    confidence_z: float = 2.33                # a rate is its Wilson lower bound at this z (2.33: 99%)
    # throttle replies: multiplicative decrease and back-off; once replies are clean again (a
    # delivery after the back-off: the probe), the factor doubles every recovery_interval back to
    # where it was before the throttles
    throttle_decrease: float = 0.5
    throttle_backoff: Duration = 300
    throttle_backoff_max: Duration = 1800
    recovery_interval: Duration = 120
    recovery_step: float = 0.0                # no longer used (recovery doubles now); accepted so old configs load
    min_factor: float = 0.05
    # block replies: pause for a cool-down and roll the warm-up back
    block_cooldown: Duration = 6 * 3600
    block_rollback_days: int = 2
    # hard bounces (share of sent)
    hard_bounce_warn: float = 0.03
    hard_bounce_pause: float = 0.10
    hard_bounce_cooldown: Duration = 12 * 3600
    # complaints (share of delivered)
    complaint_hold: float = 0.001
    complaint_pause: float = 0.003
    complaint_cooldown: Duration = DAY
    complaint_rollback_days: int = 2
    # authentication failures pause the sending domain on every ISP: a DNS problem, not volume
    auth_failure_min: int = 1
    auth_failure_pause: Duration = 6 * 3600   # 0 = until an operator resumes
    # outreach mailboxes: any complaint pauses the mailbox
    mailbox_complaint_pause: Duration = 7 * DAY
    # a day with more throttled than this share of sent is not healthy (no advance)
    healthy_max_throttle_rate: float = 0.05


@dataclass
class ClassSettings:
    """Which bounce-taxonomy reasons count as which health class (shared/corpus/bounces/README.md)."""

    throttled: list[str] = field(default_factory=lambda: ["toomanyconn", "speeding"])
    blocked: list[str] = field(default_factory=lambda: ["blocked", "badreputation", "requireptr"])
    auth: list[str] = field(default_factory=lambda: ["securityerror", "authfailure"])
    hard_bounce: list[str] = field(default_factory=lambda: ["userunknown", "hostunknown", "hasmoved"])
    complaint: list[str] = field(default_factory=lambda: ["feedback"])
    # enhanced status codes (globs) that mean "the sending domain failed authentication" whatever
    # the reason says: Gmail 5.7.26/27/30/32 and their 4.7.x forms, Microsoft 5.7.515
    auth_status: list[str] = field(default_factory=lambda: ["?.7.26", "?.7.27", "?.7.30", "?.7.32",
                                                            "5.7.515"])
    # throttle replies that concern one recipient only, not the sending IP (Gmail's 450 4.2.1):
    # counted as soft bounces
    recipient_only_status: list[str] = field(default_factory=lambda: ["4.2.1"])


@dataclass
class PolicySettings:
    """Everything the engine decides from; the top-level tables of policy.toml except [policyd]."""

    warmup: WarmupSettings = field(default_factory=WarmupSettings)
    leases: LeaseSettings = field(default_factory=LeaseSettings)
    rules: RuleSettings = field(default_factory=RuleSettings)
    classes: ClassSettings = field(default_factory=ClassSettings)
    isps: dict[str, IspSettings] = field(default_factory=dict)
    schedules: dict[str, ScheduleSettings] = field(default_factory=dict)
    sources: list[SourceSettings] = field(default_factory=list)
    domains: list[DomainSettings] = field(default_factory=list)
    mailboxes: list[MailboxRule] = field(default_factory=list)
    tenants: dict[str, TenantSettings] = field(default_factory=dict)
    pools: dict[str, PoolSettings] = field(default_factory=dict)
