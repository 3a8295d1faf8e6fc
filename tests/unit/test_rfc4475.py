"""RFC 4475 torture messages: one test per .dat file, asserting the specific outcome of
DIGEST §21 (parse values for valid messages, the exact status for invalid ones, drops)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.sip.errors import DropMessage, RemoteProtocolError
from gateway.sip.framing import Frame, StreamFramer
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.parser import parse_message
from gateway.sip.uri import AbsoluteUri, SipUri, uri_equal
from gateway.sip.validate import (
    GATEWAY_POLICY,
    error_response,
    validate_request,
    validate_response,
)
from gateway.sip.validate import (
    check_forwarding as relay_check,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "rfc4475"
EXPECTATIONS = json.loads((VECTORS / "expectations.json").read_text(encoding="utf-8"))


def load(name: str) -> bytes:
    return (VECTORS / f"{name}.dat").read_bytes()


def request(name: str) -> SipRequest:
    msg = parse_message(load(name))
    assert isinstance(msg, SipRequest)
    return msg


def response(name: str) -> SipResponse:
    msg = parse_message(load(name))
    assert isinstance(msg, SipResponse)
    return msg


def parse_error(name: str) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(load(name))
    return info.value


def validation_error(name: str) -> RemoteProtocolError:
    req = request(name)
    with pytest.raises(RemoteProtocolError) as info:
        validate_request(req, GATEWAY_POLICY)
    return info.value


def valid(name: str) -> SipRequest:
    req = request(name)
    validate_request(req, GATEWAY_POLICY)
    return req


def sip(uri: object) -> SipUri:
    assert isinstance(uri, SipUri)
    return uri


# ---------------------------------------------------------------- §3.1.1 valid messages


def check_wsinv() -> None:  # §3.1.1.1
    req = valid("wsinv")
    assert req.method == "INVITE"
    assert req.max_forwards == 68
    assert req.cseq is not None and (req.cseq.seq, req.cseq.method) == (9, "INVITE")
    assert req.headers.get("Subject") == ""
    assert req.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert req.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert [v.host for v in req.vias] == ["192.0.2.2", "spindle.example.com", "192.168.255.111"]
    assert [v.branch for v in req.vias] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert req.to is not None and req.to.tag == "1918181833n"
    assert req.from_ is not None and req.from_.display_name == 'J Rosenberg \\"'
    assert req.from_.tag == "98asjd8"
    (contact,) = req.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.q == 0.33 and "secondparam" in contact.params
    assert contact.params.get("newparam") == "newvalue"
    assert sip(req.uri).has_param("unknownparam") and sip(req.uri).param("unknownparam") is None
    assert sip(req.routes[0].uri).lr
    assert len(req.body) == 150


def check_intmeth() -> None:  # §3.1.1.2
    req = request("intmeth")
    assert req.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = sip(req.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert req.to is not None and req.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert req.from_ is not None and req.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert req.from_.tag == "_token~1'+`*%!-."
    assert req.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert req.vias[0].branch == "z9hG4bK-.!%66*_+`'~"
    assert req.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    err = validation_error("intmeth")
    assert err.status == 501
    assert dict(err.extra_headers)["Allow"].split(", ") == sorted(GATEWAY_POLICY.methods)


def check_esc01() -> None:  # §3.1.1.3
    req = valid("esc01")
    uri = sip(req.uri)
    assert uri.user_decoded == "sips:user@example.com" and uri.host == "example.net"
    assert req.to is not None and sip(req.to.uri).user_decoded == "user"
    assert req.from_ is not None and sip(req.from_.uri).user_decoded == "I have spaces"
    contact = sip(req.contacts[0].uri)
    assert uri_equal(
        contact,
        SipUri(
            user="caller",
            host="host5.example.net",
            params=(("lr", None), ("name", "value%25%34%31")),
        ),
    )
    assert contact.param("name") == "v%61lue%25%34%31"
    assert contact.lr  # %6C%72 is "lr"
    # no recursive unescaping: value%41 != valueA
    assert not uri_equal(contact, contact.with_params(("name", "valueA")))


def check_escnull() -> None:  # §3.1.1.4
    req = valid("escnull")
    assert req.to is not None and sip(req.to.uri).user_decoded == "null-\x00-null"
    users = [sip(c.uri).user_decoded for c in req.contacts]
    assert users == ["\x00", "\x00\x00"]
    assert not uri_equal(req.contacts[0].uri, req.contacts[1].uri)


def check_esc02() -> None:  # §3.1.1.5
    req = request("esc02")
    assert req.method == "RE%47IST%45R" and req.method != "REGISTER"
    assert req.to is not None and req.to.display_name == "%Z%45"
    assert len(req.contacts) == 2
    assert req.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert validation_error("esc02").status == 501


def check_lwsdisp() -> None:  # §3.1.1.6
    req = valid("lwsdisp")
    assert req.from_ is not None and req.from_.display_name == "caller"
    assert sip(req.from_.uri).user == "caller"


def check_longreq() -> None:  # §3.1.1.7
    data = load("longreq")
    assert len(data) == 3515
    req = valid("longreq")
    assert req.from_ is not None and req.from_.tag is not None and len(req.from_.tag) > 150
    assert len(req.vias) == 34 and len(req.from_.tag) == 155
    assert req.call_id is not None and len(req.call_id) == 141
    assert req.to is not None and sip(req.to.uri).port == 6000 and len(req.body) == 150


def check_dblreq() -> None:  # §3.1.1.8
    req = valid("dblreq")
    assert req.method == "REGISTER" and req.body == b""
    assert req.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def check_semiuri() -> None:  # §3.1.1.9
    req = valid("semiuri")
    uri = sip(req.uri)
    assert uri.user_decoded == "user;par=u@example.net" and uri.host == "example.com"
    assert uri.params == ()
    assert req.accept is not None and len(req.accept) == 6


def check_transports() -> None:  # §3.1.1.10
    req = valid("transports")
    assert [v.transport for v in req.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def check_mpart01() -> None:  # §3.1.1.11
    req = valid("mpart01")
    assert req.method == "MESSAGE"
    assert len(req.body) == req.content_length == 553
    assert b"\x00" in req.body
    assert req.content_type is not None and req.content_type.boundary == "7a9cbec02ceef655"
    assert req.vias[0].rport_requested and req.vias[0].rport is None


def check_unreason() -> None:  # §3.1.1.12
    resp = response("unreason")
    validate_response(resp)
    assert resp.status == 200
    assert resp.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert len(resp.body) == 154


def check_noreason() -> None:  # §3.1.1.13
    resp = response("noreason")
    validate_response(resp)
    assert (resp.status, resp.reason) == (100, "")


# ---------------------------------------------------------------- §3.1.2 invalid messages


def check_badinv01() -> None:  # §3.1.2.1
    err = parse_error("badinv01")
    assert err.status == 400 and "Via" in str(err)
    reply = error_response(err)
    assert reply is not None and reply.status == 400
    assert reply.headers.get("Call-ID") == "badinv01.0ha0isndaksdjasdf3234nas"


def check_clerr() -> None:  # §3.1.2.2
    assert parse_error("clerr").status == 400
    framer = StreamFramer()  # TCP: keep waiting for the rest of the body
    assert framer.feed(load("clerr")) == []
    assert framer.buffered == len(load("clerr"))


def check_ncl() -> None:  # §3.1.2.3
    err = parse_error("ncl")
    assert err.status == 400 and err.fatal
    with pytest.raises(RemoteProtocolError) as info:
        StreamFramer().feed(load("ncl"))
    assert info.value.fatal


def check_scalar02() -> None:  # §3.1.2.4
    err = parse_error("scalar02")
    assert err.status == 400 and "CSeq" in str(err)
    # alone, Max-Forwards 300 is "absent" and overlarge expiries fall back to 3600
    fixed = load("scalar02").replace(b"36893488147419103232", b"36")
    req = parse_message(fixed)
    assert isinstance(req, SipRequest)
    assert req.max_forwards is None
    assert req.expires == 3600 and req.contacts[0].expires == 3600


def check_scalarlg() -> None:  # §3.1.2.5
    with pytest.raises(DropMessage):
        parse_message(load("scalarlg"))
    fixed = parse_message(load("scalarlg").replace(b"9292394834772304023312", b"9"))
    assert isinstance(fixed, SipResponse)
    with pytest.raises(DropMessage):  # Retry-After and warn-code alone also drop it
        validate_response(fixed)


def check_quotbal() -> None:  # §3.1.2.6
    err = parse_error("quotbal")
    assert err.status == 400 and "name-addr" in str(err)


def check_ltgtruri() -> None:  # §3.1.2.7
    err = parse_error("ltgtruri")
    assert err.status == 400 and "URI" in str(err)


def check_lwsruri() -> None:  # §3.1.2.8
    assert parse_error("lwsruri").status == 400


def check_lwsstart() -> None:  # §3.1.2.9
    assert parse_error("lwsstart").status == 400


def check_trws() -> None:  # §3.1.2.10
    err = parse_error("trws")
    assert err.status == 400
    reply = error_response(err)
    assert reply is not None and reply.headers.get("CSeq") == "238923 OPTIONS"


def check_escruri() -> None:  # §3.1.2.11
    req = request("escruri")
    assert sip(req.uri).headers == (("Route", "%3Csip:example.com%3E"),)
    assert "Route" not in req.headers  # never turned into a real header
    assert validation_error("escruri").status == 400


def check_baddate() -> None:  # §3.1.2.12: the Date does not matter to us -> ignored
    req = valid("baddate")
    assert req.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def check_regbadct() -> None:  # §3.1.2.13
    err = validation_error("regbadct")
    assert err.status == 400 and "name-addr" in str(err)


def check_badaspec() -> None:  # §3.1.2.14
    assert parse_error("badaspec").status == 400


def check_baddn() -> None:  # §3.1.2.15
    err = parse_error("baddn")
    assert err.status == 400 and "Bell, Alexander" in str(err)


def check_badvers() -> None:  # §3.1.2.16
    err = parse_error("badvers")
    assert err.status == 505
    reply = error_response(err)
    assert reply is not None and reply.reason == "Version Not Supported"


def check_mismatch01() -> None:  # §3.1.2.17
    err = parse_error("mismatch01")
    assert err.status == 400 and "CSeq" in str(err)


def check_mismatch02() -> None:  # §3.1.2.18
    assert parse_error("mismatch02").status == 501
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(load("mismatch02"), allow=("MESSAGE", "OPTIONS"))
    assert info.value.extra_headers == (("Allow", "MESSAGE, OPTIONS"),)


def check_bigcode() -> None:  # §3.1.2.19
    with pytest.raises(DropMessage):
        parse_message(load("bigcode"))


# ---------------------------------------------------------------- §3.2, §3.3, §3.4


def check_badbranch() -> None:  # §3.2.1: parse, fall back to RFC 2543 matching
    req = valid("badbranch")
    assert req.vias[0].branch == "z9hG4bK" and not req.vias[0].rfc3261_branch


def check_insuf() -> None:  # §3.3.1
    err = validation_error("insuf")
    assert err.status == 400 and "To, From, Call-ID" in str(err)


def check_unkscm() -> None:  # §3.3.2
    req = request("unkscm")
    assert req.uri == AbsoluteUri("nobodyKnowsThisScheme", "totallyopaquecontent")
    assert validation_error("unkscm").status == 416


def check_novelsc() -> None:  # §3.3.3
    req = request("novelsc")
    assert req.uri == AbsoluteUri("soap.beep", "//192.0.2.103:3002")
    assert validation_error("novelsc").status == 416


def check_unksm2() -> None:  # §3.3.4
    req = request("unksm2")
    assert req.to is not None and str(req.to.uri) == "isbn:2983792873"
    assert req.from_ is not None and str(req.from_.uri) == "http://www.example.com"
    assert str(req.contacts[0].uri) == "name:John_Smith"
    assert validation_error("unksm2").status == 400  # as a registrar: AOR must be SIP


def check_bext01() -> None:  # §3.3.5
    err = validation_error("bext01")
    assert err.status == 420
    assert err.extra_headers == (("Unsupported", "nothingSupportsThis, nothingSupportsThisEither"),)


def check_invut() -> None:  # §3.3.6
    err = validation_error("invut")
    assert err.status == 415
    accept = dict(err.extra_headers)["Accept"].split(", ")
    assert "message/cpim" in accept and "application/unknownformat" not in accept


def check_regaut01() -> None:  # §3.3.7
    req = valid("regaut01")  # a registrar ignoring authentication processes it
    (auth,) = req.auth_headers("Authorization")
    assert auth.scheme == "NoOneKnowsThisScheme" and auth.get("opaque-data") == "here"
    no_registrar = type(GATEWAY_POLICY)(methods=GATEWAY_POLICY.methods - {"REGISTER"})
    with pytest.raises(RemoteProtocolError) as info:
        validate_request(req, no_registrar)
    assert info.value.status == 405


def check_multi01() -> None:  # §3.3.8
    err = parse_error("multi01")
    assert err.status == 400 and "duplicate" in str(err)


def check_mcl01() -> None:  # §3.3.9
    err = parse_error("mcl01")
    assert err.status == 400 and err.fatal
    with pytest.raises(RemoteProtocolError):
        StreamFramer().feed(load("mcl01"))


def check_bcast() -> None:  # §3.3.10
    resp = response("bcast")
    assert resp.vias[1].host == "255.255.255.255"
    with pytest.raises(DropMessage):
        validate_response(resp)


def check_zeromf() -> None:  # §3.3.11: a UAS processes it, a relay answers 483
    req = valid("zeromf")
    assert req.max_forwards == 0
    with pytest.raises(RemoteProtocolError) as info:
        relay_check(req)
    assert info.value.status == 483


def check_cparam01() -> None:  # §3.3.12
    (contact,) = valid("cparam01").contacts
    assert sip(contact.uri).params == () and "unknownparam" in contact.params


def check_cparam02() -> None:  # §3.3.13
    (contact,) = valid("cparam02").contacts
    assert sip(contact.uri).has_param("unknownparam") and len(contact.params) == 0


def check_regescrt() -> None:  # §3.3.14
    (contact,) = valid("regescrt").contacts
    assert sip(contact.uri).headers == (("Route", "%3Csip:sip.example.com%3E"),)
    assert str(contact.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def check_sdp01() -> None:  # §3.3.15
    err = validation_error("sdp01")
    assert err.status == 406 and dict(err.extra_headers)["Warning"].startswith("399 ")


def check_inv2543() -> None:  # §3.4.1
    data = load("inv2543")
    req = valid("inv2543")
    assert req.max_forwards is None and req.vias[0].branch is None
    assert req.from_ is not None and req.from_.tag is None
    assert req.body == data[data.index(b"\r\n\r\n") + 4 :] and req.body.startswith(b"v=0")
    assert req.from_.uri == SipUri(
        user="+13035551111", host="ift.client.example.net", params=(("user", "phone"),)
    )
    assert sip(req.from_.uri).is_phone
    # To without <>: ";user=phone" is a header parameter there (RFC 3261 §20.10)
    assert req.to is not None and not sip(req.to.uri).is_phone and "user" in req.to.params


def check_test() -> None:  # unreferenced archive member: malformed Request-Line
    err = parse_error("test")
    assert err.status == 400
    assert error_response(err) is None  # no Via: nowhere to send a response


CHECKS: dict[str, Callable[[], None]] = {
    name[len("check_") :]: fn for name, fn in globals().items() if name.startswith("check_")
}


def test_every_vector_has_a_check() -> None:
    assert sorted(CHECKS) == sorted(e["name"] for e in EXPECTATIONS)
    assert len(CHECKS) == 50


@pytest.mark.parametrize("entry", EXPECTATIONS, ids=[e["file"] for e in EXPECTATIONS])
def test_vector(entry: dict[str, str]) -> None:
    CHECKS[entry["name"]]()


@pytest.mark.parametrize("entry", EXPECTATIONS, ids=[e["file"] for e in EXPECTATIONS])
def test_vector_bytes_are_intact(entry: dict[str, str]) -> None:
    import hashlib

    assert hashlib.sha256(load(entry["name"])).hexdigest() == entry["sha256"]


@pytest.mark.parametrize("name", ["wsinv", "esc01", "mpart01", "longreq", "semiuri", "esc02"])
def test_valid_vectors_frame_on_a_stream(name: str) -> None:
    """RFC 3261 §18.3: a valid message with Content-Length is one frame on TCP."""
    data = load(name)
    assert StreamFramer().feed(data) == [Frame(data)]
