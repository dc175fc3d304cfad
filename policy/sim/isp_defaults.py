"""Built-in models of the large mailbox providers; a scenario's [isps.NAME] tables override them.

The wordings are the providers' own (shared/reference/isp-replies.md); the numbers are a model,
not a measurement: they make Gmail and Microsoft the strictest about sudden volume on a new IP
(reference/warmup-schedules.md), Yahoo quick to defer on complaints, and the long tail lenient.
Gmail sends no per-message complaint reports, so its complaints only show in its reputation.
"""

from __future__ import annotations

from typing import Any

# Values every modelled ISP starts from; each provider below changes what differs.
_COMMON: dict[str, Any] = {
    "accept_reply": "250 2.0.0 OK",
    "throttle_reply": "421 4.7.0 Try again later, closing connection",
    "block_reply": "554 5.7.1 Service unavailable; Client host [IP] blocked by local policy",
    "blocklist_reply": "554 5.7.1 Service unavailable; Client host [IP] blocked using zen.spamhaus.org",
    "unknown_user_reply": "550 5.1.1 User unknown",
}

DEFAULT_ISPS: dict[str, dict[str, Any]] = {
    "google": {
        **_COMMON,
        "mx": "gmail-smtp-in.l.google.com",
        "domain": "gmail.com",
        "initial_reputation": 0.3,
        "min_hourly": 20,
        "steady_reputation": 0.2,
        "surge": 1.5,
        "block_floor": 0.1,
        "complaint_weight": 1.7,
        "feedback_loop": False,
        "uses_blocklists": False,
        "throttle_reply": "421 4.7.28 [IP] Our system has detected an unusual rate of unsolicited mail "
                          "originating from your IP address. To protect our users from spam, mail sent from "
                          "your IP address has been temporarily rate limited.",
        "block_reply": "550 5.7.1 [IP] Our system has detected an unusual rate of unsolicited mail originating "
                       "from your IP address. To protect our users from spam, mail sent from your IP address "
                       "has been blocked.",
        "blocklist_reply": "550 5.7.1 [IP] Our system has detected an unusual rate of unsolicited mail "
                           "originating from your IP address. To protect our users from spam, mail sent from "
                           "your IP address has been blocked.",
        "unknown_user_reply": "550 5.1.1 The email account that you tried to reach does not exist.",
    },
    "yahoo": {
        **_COMMON,
        "mx": "mta5.am0.yahoodns.net",
        "domain": "yahoo.com",
        "initial_reputation": 0.3,
        "min_hourly": 30,
        "steady_reputation": 0.18,
        "surge": 1.5,
        "block_floor": 0.1,
        "complaint_weight": 2.5,
        "complaint_throttle": 0.003,
        "feedback_loop": True,
        "throttle_reply": "421 4.7.0 [TSS04] Messages from [IP] temporarily deferred due to unexpected volume "
                          "or user complaints - 4.16.55.1",
        "block_reply": "421 4.7.0 [TSS09] All messages from [IP] will be permanently deferred; Retrying will "
                       "NOT succeed.",
        "blocklist_reply": "553 5.7.1 [BL21] Connections will not be accepted from [IP], because the ip is in "
                           "Spamhaus's list; see https://postmaster.yahooinc.com/error-codes",
        "unknown_user_reply": "554 delivery error: dd This user doesn't have a yahoo.com account - mta1.mail",
    },
    "microsoft": {
        **_COMMON,
        "mx": "outlook-com.olc.protection.outlook.com",
        "domain": "outlook.com",
        "initial_reputation": 0.3,
        "min_hourly": 20,
        "steady_reputation": 0.2,
        "surge": 1.5,
        "block_floor": 0.12,
        "complaint_weight": 1.7,
        "feedback_loop": True,
        "async_bounce_share": 0.2,
        "throttle_reply": "451 4.7.650 The mail server [IP] has been temporarily rate limited due to IP "
                          "reputation. For e-mail delivery information, see https://postmaster.live.com",
        "block_reply": "550 5.7.1 Unfortunately, messages from [IP] weren't sent. Please contact your "
                       "Internet service provider since part of their network is on our block list (S3150).",
        "blocklist_reply": "550 5.7.1 Unfortunately, messages from [IP] weren't sent. Please contact your "
                           "Internet service provider since part of their network is on our block list (S3150).",
        "unknown_user_reply": "550 5.5.0 Requested action not taken: mailbox unavailable",
    },
    "other": {
        **_COMMON,
        "mx": "mx1.mail.example.net",
        "domain": "mail.example.net",
        "initial_reputation": 0.4,
        "min_hourly": 100,
        "steady_reputation": 0.15,
        "surge": 1.5,
        "block_floor": 0.05,
        "complaint_weight": 1.0,
        "complaint_throttle": 0.01,
        "feedback_loop": True,
        "async_bounce_share": 0.5,
    },
}
