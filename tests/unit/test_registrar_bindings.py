"""REGISTER processing: RFC 3261 §10.3, RFC 5627 (GRUU), RFC 5626 (outbound)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import RegistrarConfig, SipConfig
from gateway.registrar.bindings import (
    RegisterOutcome,
    RegistrarPolicy,
    canonical_aor,
    delivery_order,
    next_deadline,
    process_register,
    public_gruu,
    resource_of,
    resource_token,
)
from gateway.sip.message import SipRequest
from gateway.sip.parser import parse_message
from gateway.sip.uri import parse_uri
from gateway.store.api import Binding, Flow
from mappings.jid import check_resourcepart

AOR = "sip:romeo@sip.localhost"
POLICY = RegistrarPolicy(hosted_domains=frozenset({"sip.localhost"}))
FLOW = Flow("tcp", "127.0.0.1:5060", "192.0.2.7:40001", "conn-1")
INSTANCE = "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"


def register(
    *contacts: str,
    expires: int | None = None,
    call_id: str = "call-1",
    cseq: int = 1,
    to: str = "<sip:romeo@sip.localhost>",
    ruri: str = "sip:sip.localhost",
    extra: tuple[str, ...] = (),
) -> SipRequest:
    lines = [
        f"REGISTER {ruri} SIP/2.0",
        "Via: SIP/2.0/TCP 192.0.2.7:40001;branch=z9hG4bK776asdhds",
        "Max-Forwards: 70",
        f"To: {to}",
        f"From: {to};tag=456248",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *(f"Contact: {c}" for c in contacts),
        *([] if expires is None else [f"Expires: {expires}"]),
        *extra,
        "Content-Length: 0",
    ]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, SipRequest)
    return msg


def run(
    request: SipRequest,
    existing: tuple[Binding, ...] = (),
    now: float = 1000.0,
    policy: RegistrarPolicy = POLICY,
    identity: str | None = AOR,
) -> RegisterOutcome:
    return process_register(request, now, policy, existing, flow=FLOW, identity=identity)


def contacts_of(outcome: RegisterOutcome) -> list[str]:
    return [v for n, v in outcome.headers if n == "Contact"]


def header(outcome: RegisterOutcome, name: str) -> str | None:
    return next((v for n, v in outcome.headers if n == name), None)


# ---------------------------------------------------------------- basic bindings


def test_first_registration_adds_binding_with_flow() -> None:
    out = run(register("<sip:romeo@192.0.2.7:40001;transport=tcp>;q=0.7", expires=600))
    assert out.ok and out.aor == AOR
    (b,) = out.bindings
    assert b.contact == "sip:romeo@192.0.2.7:40001;transport=tcp"
    assert (b.expires_at, b.q, b.call_id, b.cseq) == (1600.0, 0.7, "call-1", 1)
    assert b.flow == FLOW and b.received == "192.0.2.7:40001"
    assert out.changes.added == (b,) and not out.changes.refreshed and not out.changes.removed
    assert contacts_of(out) == ["<sip:romeo@192.0.2.7:40001;transport=tcp>;expires=600;q=0.7"]
    assert header(out, "Date") == "Thu, 01 Jan 1970 00:16:40 GMT"
    assert out.response(register("<sip:x@192.0.2.1>"), to_tag="t1").status == 200


def test_several_contacts_with_param_header_and_default_expiry() -> None:
    req = register("<sip:romeo@192.0.2.1>;expires=120", "<sip:romeo@192.0.2.2>", expires=900)
    out = run(req)
    assert [b.expires_at for b in out.bindings] == [1120.0, 1900.0]
    out = run(register("<sip:romeo@192.0.2.3>"))
    assert out.bindings[0].expires_at == 1000.0 + POLICY.default_expires


def test_expiry_capped_at_maximum() -> None:
    out = run(register("<sip:romeo@192.0.2.1>", expires=99_999))
    assert out.bindings[0].expires_at == 1000.0 + POLICY.max_expires
    assert contacts_of(out)[0].endswith(f";expires={POLICY.max_expires}")


@pytest.mark.parametrize("expires", [1, 30, 59])
def test_too_brief_gets_423_with_min_expires(expires: int) -> None:
    existing = run(register("<sip:romeo@192.0.2.1>")).bindings
    out = run(register("<sip:romeo@192.0.2.2>", expires=expires, cseq=2), existing)
    assert out.status == 423
    assert header(out, "Min-Expires") == "60"
    assert out.bindings == existing and not out.changes


def test_423_only_below_one_hour() -> None:
    policy = RegistrarPolicy(
        frozenset({"sip.localhost"}), min_expires=4000, default_expires=5000, max_expires=7200
    )
    out = run(register("<sip:romeo@192.0.2.1>", expires=3600), policy=policy)
    assert out.ok and out.bindings[0].expires_at == 4600.0


def test_query_without_contact_lists_bindings() -> None:
    existing = run(register("<sip:romeo@192.0.2.1>", expires=600)).bindings
    out = run(register(cseq=2), existing, now=1100.0)
    assert out.ok and out.bindings == existing and not out.changes
    assert contacts_of(out) == ["<sip:romeo@192.0.2.1>;expires=500"]


def test_refresh_same_call_id_higher_cseq() -> None:
    existing = run(register("<sip:romeo@192.0.2.1>", expires=600)).bindings
    out = run(register("<sip:romeo@192.0.2.1>", expires=600, cseq=2), existing, now=1300.0)
    assert out.ok and out.bindings[0].expires_at == 1900.0 and out.bindings[0].cseq == 2
    assert out.changes.refreshed == out.bindings and not out.changes.added


@pytest.mark.parametrize("cseq", [1, 0])
def test_out_of_order_cseq_fails_whole_request(cseq: int) -> None:
    existing = run(register("<sip:romeo@192.0.2.1>", expires=600, cseq=1)).bindings
    req = register("<sip:romeo@192.0.2.9>", "<sip:romeo@192.0.2.1>", expires=0, cseq=cseq)
    out = run(req, existing)
    assert out.status == 400 and "CSeq" in out.reason
    assert out.bindings == existing and not out.changes


def test_different_call_id_replaces_regardless_of_cseq() -> None:
    existing = run(register("<sip:romeo@192.0.2.1>", cseq=50)).bindings
    out = run(register("<sip:romeo@192.0.2.1>", call_id="call-2", cseq=1), existing)
    assert out.ok and out.bindings[0].call_id == "call-2"


def test_contact_matching_uses_uri_equality() -> None:
    existing = run(register("<sip:romeo@EXAMPLE.org:5060;foo=1>")).bindings
    out = run(register("<sip:romeo@example.org:5060>", expires=0, cseq=2), existing)
    assert out.ok and out.bindings == () and out.changes.removed == existing


def test_removal_of_one_contact_keeps_others() -> None:
    existing = run(register("<sip:romeo@192.0.2.1>", "<sip:romeo@192.0.2.2>")).bindings
    out = run(register("<sip:romeo@192.0.2.1>;expires=0", cseq=2), existing)
    assert [b.contact for b in out.bindings] == ["sip:romeo@192.0.2.2"]
    assert [b.contact for b in out.changes.removed] == ["sip:romeo@192.0.2.1"]


def test_repeated_contact_in_one_request_last_wins() -> None:
    req = register("<sip:romeo@192.0.2.1>;expires=100", "<sip:romeo@192.0.2.1>;expires=200")
    out = run(req)
    assert out.ok and len(out.bindings) == 1 and out.bindings[0].expires_at == 1200.0
    assert len(out.changes.added) == 1


def test_expired_existing_bindings_are_dropped_and_reported() -> None:
    existing = run(register("<sip:romeo@192.0.2.1>", expires=100)).bindings
    out = run(register("<sip:romeo@192.0.2.2>", cseq=2), existing, now=1200.0)
    assert [b.contact for b in out.bindings] == ["sip:romeo@192.0.2.2"]
    assert out.changes.removed == existing


# ---------------------------------------------------------------- wildcard


def test_star_with_expires_zero_removes_all() -> None:
    existing = run(register("<sip:romeo@192.0.2.1>", "<sip:romeo@192.0.2.2>")).bindings
    out = run(register("*", expires=0, cseq=2), existing)
    assert out.ok and out.bindings == () and set(out.changes.removed) == set(existing)
    assert contacts_of(out) == []


@pytest.mark.parametrize(
    ("contacts", "expires"),
    [(("*",), None), (("*",), 10), (("*", "<sip:romeo@192.0.2.1>"), 0), (("*, <sip:a@b>",), 0)],
)
def test_star_misuse_is_400(contacts: tuple[str, ...], expires: int | None) -> None:
    existing = run(register("<sip:romeo@192.0.2.1>")).bindings
    out = run(register(*contacts, expires=expires, cseq=2), existing)
    assert out.status == 400 and out.bindings == existing


def test_star_obeys_cseq_ordering() -> None:
    existing = run(register("<sip:romeo@192.0.2.1>", cseq=5)).bindings
    assert run(register("*", expires=0, cseq=5), existing).status == 400
    assert run(register("*", expires=0, call_id="other", cseq=1), existing).ok


# ---------------------------------------------------------------- refusals


def test_foreign_domain_and_bad_aor() -> None:
    assert run(register("<sip:a@192.0.2.1>", ruri="sip:example.com")).status == 403
    to_other = "<sip:romeo@other.localhost>"
    assert run(register("<sip:a@192.0.2.1>", to=to_other)).status == 404
    assert run(register("<sip:a@192.0.2.1>", to="<sip:sip.localhost>")).status == 404
    assert run(register("<sip:a@192.0.2.1>", to="<tel:+15551234>")).status == 404


def test_authenticated_user_must_own_the_aor() -> None:
    out = run(register("<sip:romeo@192.0.2.1>"), identity="sip:juliet@sip.localhost")
    assert out.status == 403
    assert run(register("<sip:romeo@192.0.2.1>"), identity=None).ok  # trusted source


@pytest.mark.parametrize(
    "contact",
    [
        "<sip:romeo@sip.localhost>",  # the AOR itself: a loop (RFC 5627 §5.1)
        "<sip:romeo@sip.localhost;gr=abc>",  # a GRUU of the AOR
        "<tel:+15551234>",  # not SIP
        "<mailto:romeo@example.com>",
    ],
)
def test_looping_or_non_sip_contact_is_403(contact: str) -> None:
    assert run(register(contact)).status == 403


def test_removing_non_sip_contact_is_harmless() -> None:
    assert run(register("<tel:+15551234>;expires=0")).ok


def test_malformed_contact_is_400() -> None:
    req = register("<sip:romeo@192.0.2.1>").with_headers(
        register("<sip:romeo@192.0.2.1>").headers.set("Contact", "<sip:romeo@192.0.2.1")
    )
    assert run(req).status == 400


def test_eviction_keeps_newest_and_requests_own() -> None:
    policy = RegistrarPolicy(frozenset({"sip.localhost"}), max_bindings=2)
    b = run(register("<sip:romeo@192.0.2.1>"), now=1.0, policy=policy).bindings
    b = run(register("<sip:romeo@192.0.2.2>", cseq=2), b, now=2.0, policy=policy).bindings
    out = run(register("<sip:romeo@192.0.2.3>", cseq=3), b, now=3.0, policy=policy)
    assert [x.contact for x in out.bindings] == ["sip:romeo@192.0.2.2", "sip:romeo@192.0.2.3"]
    assert [x.contact for x in out.changes.removed] == ["sip:romeo@192.0.2.1"]
    many = register("<sip:r@192.0.2.4>", "<sip:r@192.0.2.5>", "<sip:r@192.0.2.6>", cseq=4)
    assert run(many, out.bindings, policy=policy).status == 403


# ---------------------------------------------------------------- GRUU (RFC 5627)


def test_pub_gruu_returned_when_supported() -> None:
    contact = f'<sip:romeo@192.0.2.7:40001>;+sip.instance="{INSTANCE}"'
    out = run(register(contact, extra=("Supported: gruu, path",)))
    (b,) = out.bindings
    assert b.instance == INSTANCE
    token = resource_of(b)
    assert re.fullmatch(r"[a-z2-7]{16}", token)
    check_resourcepart(token)
    assert public_gruu(b) == f"{AOR};gr={token}"
    (value,) = contacts_of(out)
    assert f'+sip.instance="{INSTANCE}"' in value
    assert f'pub-gruu="{AOR};gr={token}"' in value
    # The GRUU parses and maps back to the AOR.
    gruu = parse_uri(f"{AOR};gr={token}")
    assert canonical_aor(gruu) == AOR


def test_no_pub_gruu_without_supported_gruu() -> None:
    out = run(register(f'<sip:romeo@192.0.2.7>;+sip.instance="{INSTANCE}"'))
    assert "pub-gruu" not in contacts_of(out)[0]


def test_resource_is_stable_across_reregistration_and_differs_per_aor() -> None:
    c1 = f'<sip:romeo@192.0.2.7:1111>;+sip.instance="{INSTANCE}"'
    c2 = f'<sip:romeo@192.0.2.7:2222>;+sip.instance="{INSTANCE}"'
    first = run(register(c1)).bindings
    second = run(register(c2, call_id="after-reboot"), first).bindings
    # Same instance, new contact (NAT rebinding): replaced, same resource.
    assert len(second) == 1 and second[0].contact == "sip:romeo@192.0.2.7:2222"
    assert resource_of(second[0]) == resource_of(first[0])
    assert resource_token("sip:juliet@sip.localhost", "instance", INSTANCE) != resource_of(first[0])


def test_same_instance_kept_twice_when_policy_says_so() -> None:
    policy = RegistrarPolicy(frozenset({"sip.localhost"}), replace_same_instance=False)
    c1 = f'<sip:romeo@192.0.2.7:1111>;+sip.instance="{INSTANCE}"'
    c2 = f'<sip:romeo@192.0.2.7:2222>;+sip.instance="{INSTANCE}"'
    first = run(register(c1), policy=policy).bindings
    assert len(run(register(c2, call_id="x"), first, policy=policy).bindings) == 2


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
@settings(max_examples=200)
def test_resource_token_is_valid_gr_and_resource(aor: str, instance: str) -> None:
    token = resource_token(aor, "instance", instance)
    assert re.fullmatch(r"[a-z2-7]{16}", token)
    check_resourcepart(token)


# ---------------------------------------------------------------- outbound (RFC 5626)


def ob_contact(port: int, reg_id: int) -> str:
    return f'<sip:romeo@192.0.2.7:{port};ob>;+sip.instance="{INSTANCE}";reg-id={reg_id}'


def test_outbound_flows_keyed_by_instance_and_reg_id() -> None:
    supported = ("Supported: outbound, gruu",)
    one = run(register(ob_contact(1111, 1), extra=supported))
    assert header(one, "Require") == "outbound"
    assert one.bindings[0].reg_id == 1 and "reg-id=1" in contacts_of(one)[0]
    two = run(register(ob_contact(1111, 2), call_id="c2", extra=supported), one.bindings)
    assert [b.reg_id for b in two.bindings] == [1, 2]  # same URI, two flows
    flow2 = Flow("tcp", "127.0.0.1:5060", "192.0.2.7:3333", "conn-7")
    again = process_register(
        register(ob_contact(3333, 1), call_id="c3", extra=supported),
        1000.0, POLICY, two.bindings, flow=flow2, identity=AOR,
    )  # fmt: skip
    assert [(b.reg_id, b.flow) for b in again.bindings] == [(1, flow2), (2, FLOW)]


def test_reg_id_without_instance_is_ignored() -> None:
    out = run(register("<sip:romeo@192.0.2.7>;reg-id=1"))
    assert out.bindings[0].reg_id is None and header(out, "Require") is None


def test_two_reg_id_contacts_is_400() -> None:
    assert run(register(ob_contact(1, 1), ob_contact(2, 2))).status == 400


def test_path_first_hop_without_ob() -> None:
    no_ob = "Path: <sip:core.example.com;lr;ob>, <sip:edge.example.com;lr>"
    out = run(register(ob_contact(1, 1), extra=(no_ob, "Supported: outbound, path")))
    assert out.status == 439
    out = run(register(ob_contact(1, 1), extra=(no_ob,)))
    assert out.ok and out.bindings[0].reg_id is None  # not asked for: reg-id ignored
    with_ob = "Path: <sip:edge.example.com;lr;ob>"
    out = run(register(ob_contact(1, 1), extra=(with_ob, "Supported: outbound, path")))
    assert out.ok and out.bindings[0].reg_id == 1
    assert out.bindings[0].path == ("<sip:edge.example.com;lr;ob>",)


def test_flow_timer_when_configured() -> None:
    policy = RegistrarPolicy(frozenset({"sip.localhost"}), flow_timer=110)
    out = run(register(ob_contact(1, 1), extra=("Supported: outbound",)), policy=policy)
    assert header(out, "Flow-Timer") == "110"


# ---------------------------------------------------------------- delivery helpers


def test_delivery_order_q_then_recency_and_gruu_filter() -> None:
    b = run(register("<sip:romeo@192.0.2.1>;q=0.5"), now=1.0).bindings
    b = run(register("<sip:romeo@192.0.2.2>", cseq=2), b, now=2.0).bindings  # q absent = 1.0
    inst = f'<sip:romeo@192.0.2.3>;q=0.5;+sip.instance="{INSTANCE}"'
    b = run(register(inst, cseq=3), b, now=3.0).bindings
    order = [x.contact for x in delivery_order(b, now=10.0)]
    assert order == ["sip:romeo@192.0.2.2", "sip:romeo@192.0.2.3", "sip:romeo@192.0.2.1"]
    only = delivery_order(b, 10.0, resource=resource_of(b[2]))
    assert [x.contact for x in only] == ["sip:romeo@192.0.2.3"]
    assert delivery_order(b, now=1e9) == ()
    assert next_deadline(b) == 1.0 + POLICY.default_expires
    assert next_deadline(()) is None


def test_policy_from_config_and_validation() -> None:
    policy = RegistrarPolicy.from_config(
        RegistrarConfig(min_expires=30, max_expires=600, default_expires=300),
        SipConfig(hosted_domains=("SIP.localhost",)),
    )
    assert policy.hosts("sip.LOCALHOST.") and (policy.min_expires, policy.max_expires) == (30, 600)
    with pytest.raises(ValueError):
        RegistrarPolicy(frozenset(), min_expires=10, default_expires=5)


def test_canonical_aor_unescapes_and_drops_params() -> None:
    uri = parse_uri("sips:f%C3%BC@Sip.Localhost:5061;transport=tls")
    assert canonical_aor(uri) == "sip:fü@sip.localhost"


def test_not_register_is_a_bug() -> None:
    req = register("<sip:a@192.0.2.1>").replace(method="MESSAGE")
    with pytest.raises(ValueError):
        run(req)


# ---------------------------------------------------------------- bad input (issue 23)


@pytest.mark.parametrize(
    "instance",
    [
        '"urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"',  # no angle brackets
        '"<sip:romeo@192.0.2.7>"',  # not a URN
        '"<urn:uuid>"',  # no NSS
        '"<>"',
        "abc",  # a token, not a quoted string
    ],
)
def test_malformed_instance_is_400_naming_the_parameter(instance: str) -> None:
    out = run(register(f"<sip:romeo@192.0.2.7>;+sip.instance={instance}"))
    assert out.status == 400 and "+sip.instance" in out.reason
    assert not out.changes


def test_unquoted_urn_instance_is_400_naming_the_parameter() -> None:
    """`urn:...` unquoted is not even a token: the Contact does not parse."""
    out = run(register(f"<sip:romeo@192.0.2.7>;+sip.instance={INSTANCE[1:-1]}"))
    assert out.status == 400 and "+sip.instance" in out.reason


def test_instance_flag_without_value_is_400() -> None:
    out = run(register("<sip:romeo@192.0.2.7>;+sip.instance"))
    assert out.status == 400 and "+sip.instance" in out.reason


@pytest.mark.parametrize("reg_id", ["0", "-1", "abc", "2147483648", '"1"', ""])
def test_malformed_reg_id_is_400_naming_the_parameter(reg_id: str) -> None:
    value = f";reg-id={reg_id}" if reg_id else ";reg-id"
    out = run(register(f'<sip:romeo@192.0.2.7;ob>;+sip.instance="{INSTANCE}"{value}'))
    assert out.status == 400 and "reg-id" in out.reason


def test_malformed_reg_id_without_instance_is_400_too() -> None:
    out = run(register("<sip:romeo@192.0.2.7>;reg-id=x"))
    assert out.status == 400 and "reg-id" in out.reason


def test_valid_instance_and_reg_id_accepted() -> None:
    out = run(register(f'<sip:romeo@192.0.2.7;ob>;+sip.instance="{INSTANCE}";reg-id=2147483647'))
    assert out.ok and out.bindings[0].reg_id == 2**31 - 1


def test_contact_gruu_of_another_hosted_user_is_403() -> None:
    out = run(register("<sip:juliet@sip.localhost;gr=abcdefghijklmnop>"))
    assert out.status == 403 and "GRUU" in out.reason
    own = run(register("<sip:romeo@sip.localhost;gr=abcdefghijklmnop>"))
    assert own.status == 403  # RFC 5627 §5.1: a GRUU of the AOR loops


def test_contact_gruu_of_a_foreign_domain_is_accepted() -> None:
    """Another domain's GRUU is a routable contact like any other (RFC 5627 §5.1 only
    forbids the AOR's own)."""
    assert run(register("<sip:romeo@example.net;gr=xyz>")).ok


def test_path_echoed_with_supported_path() -> None:
    """RFC 3327 §5.3: the registrar returns the stored Path and says it supports it."""
    path = "Path: <sip:edge.example.com;lr>, <sip:core.example.com;lr>"
    out = run(register("<sip:romeo@192.0.2.7>", extra=(path,)))
    assert out.ok and out.bindings[0].path == (
        "<sip:edge.example.com;lr>",
        "<sip:core.example.com;lr>",
    )
    assert [v for n, v in out.headers if n == "Path"] == list(out.bindings[0].path)
    assert header(out, "Supported") == "path"
    assert header(run(register("<sip:romeo@192.0.2.7>")), "Supported") is None
