"""bench/kamailio_bench.py and the ratio line of bench/pager_bench.py (issue 27)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bench.common import Row
from bench.kamailio_bench import descendants, render_config
from bench.pager_bench import _ratios

pytestmark = pytest.mark.unit


def test_the_kamailio_config_is_filled_in() -> None:
    text = render_config(
        module=Path("/b/xmpp.so"),
        sip_port=5071,
        component_port=5347,
        domain="sip.localhost",
        secret="s3",
        uas_port=5090,
    )
    assert re.findall(r"@[A-Z_]+@", text.split("\n", 3)[3]) == []  # past the header comment
    for line in (
        "listen=udp:127.0.0.1:5071",
        'loadmodule "/b/xmpp.so"',
        'modparam("xmpp", "xmpp_port", 5347)',
        'modparam("xmpp", "xmpp_password", "s3")',
        'modparam("xmpp", "xmpp_domain", "sip.localhost")',
        'modparam("xmpp", "outbound_proxy", "sip:127.0.0.1:5090")',
    ):
        assert line in text


def test_descendants_start_with_the_process_itself() -> None:
    assert descendants(os.getpid())[0] == os.getpid()


def _row(name: str, rate: float, cpu: float, offered: float) -> Row:
    return Row("pager-s2x", name, rate=rate, cpu_per_1k=cpu, extra={"offered": offered})


def test_ratios_are_gateway_over_the_other_system() -> None:
    rows = [
        _row("gateway sustained", 1000, 0.4, 1000),
        _row("gateway @ 500/s", 500, 0.5, 500),
        _row("bare sustained", 4000, 0.05, 4000),
        _row("bare @ 500/s", 500, 0.1, 500),
        _row("kamailio sustained", 5000, 0.08, 5000),
        _row("kamailio @ 500/s", 500, 0.1, 500),
    ]
    assert _ratios(rows) == (
        "gateway/kamailio: rate 0.20, CPU/1k at sustained 5.00, CPU/1k at 500/s 5.00; "
        "gateway/bare: rate 0.25, CPU/1k at sustained 8.00, CPU/1k at 500/s 5.00"
    )
    assert _ratios(rows[:2]) == ""  # neither system ran
