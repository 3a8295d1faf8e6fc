"""issue 22 item 1: `SeenNames`, the display names SIP contacts show (From, trusted PAI)."""

from __future__ import annotations

import pytest

from gateway.bridge.dispatch import message_handler
from gateway.bridge.pager.names import SeenNames, contact_key
from gateway.sip.message import SipRequest
from gateway.sip.parser import parse_message

pytestmark = pytest.mark.unit

AOR = "sip:romeo@example.com"


def request(from_: str, *extra: str) -> SipRequest:
    head = [
        "MESSAGE sip:juliet@localhost SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1",
        "Max-Forwards: 70",
        f"From: {from_};tag=t1",
        "To: <sip:juliet@localhost>",
        "Call-ID: c1@127.0.0.1",
        "CSeq: 1 MESSAGE",
        *extra,
        "Content-Length: 0",
    ]
    req = parse_message(("\r\n".join(head) + "\r\n\r\n").encode())
    assert isinstance(req, SipRequest)
    return req


def test_from_display_name_is_kept_and_found_whatever_the_case_or_escaping() -> None:
    names = SeenNames()
    names.saw(request('"Romeo Montague" <sip:romeo@Example.COM>'), AOR, False)
    assert names(AOR) == "Romeo Montague"
    assert names("sip:romeo@EXAMPLE.com") == names("sip:rom%65o@example.com") == "Romeo Montague"
    assert names("sip:tybalt@example.com") is None
    assert contact_key("sips:romeo@example.com") is None  # never bridged, never named


def test_a_request_without_a_name_keeps_the_last_one_and_a_new_name_replaces_it() -> None:
    names = SeenNames()
    names.saw(request('"Romeo" <sip:romeo@example.com>'), AOR, False)
    names.saw(request("<sip:romeo@example.com>"), AOR, False)
    assert names(AOR) == "Romeo"
    names.saw(request("Romeo Montague <sip:romeo@example.com>"), AOR, False)
    assert names(AOR) == "Romeo Montague"


def test_pai_counts_only_from_a_trusted_peer_and_only_for_the_sender() -> None:
    pai = 'P-Asserted-Identity: "Romeo (asserted)" <sip:romeo@example.com>, <tel:+15551234567>'
    untrusted = SeenNames()
    untrusted.saw(request('"Anybody" <sip:romeo@example.com>', pai), AOR, False)
    assert untrusted(AOR) == "Anybody"  # RFC 3325 §5: ignored from outside the trust domain
    trusted = SeenNames()
    trusted.saw(request('"Anybody" <sip:romeo@example.com>', pai), AOR, True)
    assert trusted(AOR) == "Romeo (asserted)"
    other = SeenNames()  # an assertion naming somebody else names nobody here
    other.saw(request('"From" <sip:romeo@example.com>', 'P-Asserted-Identity: "T" <sip:t@x>'),
              AOR, True)  # fmt: skip
    assert other(AOR) == "From"
    bad = SeenNames()  # a malformed assertion asserts nothing
    bad.saw(request('"From" <sip:romeo@example.com>', "P-Asserted-Identity: <<<"), AOR, True)
    assert bad(AOR) == "From"


def test_hostile_names_are_cleaned_and_the_table_is_bounded() -> None:
    names = SeenNames(limit=2)
    names.saw(request('"Romeo\\"\x7f' + "x" * 100 + '" <sip:romeo@example.com>'), AOR, False)
    assert names(AOR) == 'Romeo" ' + "x" * 57
    for user in ("a", "b", "c"):
        names.saw(request(f'"{user}" <sip:{user}@example.com>'), f"sip:{user}@example.com", False)
    assert len(names) <= 2  # forgotten all at once when full (gateway.memo)
    assert names("sip:c@example.com") == "c"


class _Sender:
    def __init__(self, via: str) -> None:
        self.aor, self.resource, self.via = AOR, None, via


class _Authorizer:
    def __init__(self, via: str | None) -> None:
        self.via = via

    def authorize(self, incoming: object, kind: str) -> _Sender | None:
        return None if self.via is None else _Sender(self.via)


class _Incoming:
    def __init__(self, req: SipRequest) -> None:
        self.request = req


@pytest.mark.parametrize(("via", "seen"), [("digest", False), ("trusted-peer", True), (None, None)])
def test_message_handler_tells_what_it_accepted_and_whether_the_peer_is_trusted(
    via: str | None, seen: bool | None
) -> None:
    heard: list[tuple[str, bool]] = []
    delivered: list[str | None] = []

    async def deliver(incoming: object, resource: str | None) -> None:
        delivered.append(resource)

    handle = message_handler(
        _Authorizer(via),  # type: ignore[arg-type]
        deliver,  # type: ignore[arg-type]
        lambda req, aor, trusted: heard.append((aor, trusted)),
    )
    result = handle(_Incoming(request("<sip:romeo@example.com>")))  # type: ignore[arg-type]
    if result is not None:
        result.close()  # type: ignore[attr-defined]  (not awaited: only the order matters)
    assert heard == ([] if seen is None else [(AOR, seen)])
