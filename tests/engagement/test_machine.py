"""Machine opens and clicks (privacy proxies, link scanners) are told from people's."""

from __future__ import annotations

from mta.tracking.machine import ClickBursts, judge_click, judge_open

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0"


def test_apple_privacy_proxy_opens_are_machine() -> None:
    assert judge_open(user_agent="Mozilla/5.0", client_ip="203.0.113.9").why == "apple_privacy_proxy"
    assert judge_open(user_agent=BROWSER, client_ip="17.58.1.2").machine
    assert not judge_open(user_agent=BROWSER, client_ip="203.0.113.9").machine


def test_gmail_image_proxy_is_a_person_opening() -> None:
    agent = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    assert not judge_open(user_agent=agent, client_ip="66.249.84.1").machine


def test_scanner_agents_head_requests_and_fast_clicks() -> None:
    common = {"client_ip": "198.51.100.7", "sent_at": 1000.0, "other_links_recently": 0}
    assert judge_click(user_agent="python-requests/2.31", now=5000.0, **common).why == "scanner_agent"
    assert judge_click(user_agent="", now=5000.0, **common).why == "scanner_agent"
    assert judge_click(user_agent=BROWSER, now=5000.0, method="HEAD", **common).why == "head_request"
    assert judge_click(user_agent=BROWSER, now=1003.0, **common).why == "fast_click"
    assert not judge_click(user_agent=BROWSER, now=5000.0, **common).machine


def test_every_link_at_once_is_a_burst() -> None:
    bursts = ClickBursts(window=5.0)
    seen = [bursts.note("Q", "a@b.test", f"https://x.example/{i}", 100.0 + i * 0.5) for i in range(4)]
    assert seen == [0, 1, 2, 3]
    verdicts = [judge_click(user_agent=BROWSER, client_ip="198.51.100.7", now=5000.0, sent_at=0.0,
                            other_links_recently=n).machine for n in seen]
    assert verdicts == [False, False, True, True]
    # The same link clicked again, or clicks far apart, are a person.
    assert bursts.note("Q2", "a@b.test", "https://x.example/1", 0.0) == 0
    assert bursts.note("Q2", "a@b.test", "https://x.example/1", 1.0) == 0
    assert bursts.note("Q2", "a@b.test", "https://x.example/2", 60.0) == 0


def test_bursts_memory_is_bounded() -> None:
    bursts = ClickBursts(capacity=10)
    for i in range(100):
        bursts.note(f"Q{i}", "a@b.test", "https://x.example/", float(i))
    assert len(bursts._recent) == 10
