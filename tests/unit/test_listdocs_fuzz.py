"""Fuzzing the issue-24 document parsers (bounded for CI): every parser returns a value
or raises a FormatError (which carries the SIP status), never anything else, for RFC
vectors mutated at the byte level and spliced with hostile fragments."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings.dialoginfo import merge, on_the_phone, parse_dialog_info
from mappings.presrules import decide, parse_pres_rules
from mappings.reginfo import parse_reginfo
from mappings.resourcelists import document_resolver, expand, parse_resource_lists
from mappings.rlmi import parse_list_body, parse_rlmi
from mappings.xmlsafe import FormatError
from tests.unit.listdocs_support import vector

_FRAGMENTS = [
    b"<",
    b">",
    b'"',
    b"&amp;",
    b"&#0;",
    b"<![CDATA[x]]>",
    b"<!DOCTYPE x>",
    b'<list name="x">',
    b"</list>",
    b'<entry uri="">',
    b'state="terminated"',
    b'version="-1"',
    b'cid="nowhere@x"',
    b"<state>early</state>",
    b"<from>2003-13-45T99:00:00Z</from>",
    b'<x:y xmlns:x="urn:x"/>',
    b"\xff",
    b"\r\n--50UBfW7LSCVLtggUPe5z\r\n",
    b"Content-ID: <x@y>\r\n",
    b"\r\n\r\n",
]


@st.composite
def _mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 8))
        insert = draw(st.sampled_from(_FRAGMENTS) | st.binary(max_size=6))
        data[at : at + cut] = insert
    return bytes(data)


def _resource_lists(data: bytes) -> None:
    doc = parse_resource_lists(data)
    expand(doc, document_resolver(doc, "resource-lists/users/sip:bill@example.com/index"))


def _dialog_info(data: bytes) -> None:
    doc = parse_dialog_info(data)
    on_the_phone(merge(None, doc).table)


def _pres_rules(data: bytes) -> None:
    decide("sip:user@example.com", parse_pres_rules(data), spheres=["work"])


_NOTIFY_TYPE = (
    'multipart/related;type="application/rlmi+xml";'
    'start="<nXYxAE@pres.vancouver.example.com>";boundary="50UBfW7LSCVLtggUPe5z"'
)


def _list_body(data: bytes) -> None:
    parse_list_body(_NOTIFY_TYPE, data)


_TARGETS: dict[str, tuple[str, Callable[[bytes], object]]] = {
    "resource-lists": ("rfc4826-s3.3-resource-lists.xml", _resource_lists),
    "rlmi": ("rfc4662-s5.1-rlmi.xml", parse_rlmi),
    "list-body": ("rfc4662-s6-notify-body.txt", _list_body),
    "reginfo": ("rfc3680-s5.3-reginfo.xml", parse_reginfo),
    "dialog-info": ("rfc4235-s6.1-dialog-early.xml", _dialog_info),
    "pres-rules": ("rfc5025-s6-pres-rules.xml", _pres_rules),
    "common-policy": ("rfc4745-s12-common-policy.xml", _pres_rules),
}


@pytest.mark.parametrize("name", sorted(_TARGETS))
def test_parsers_are_total(name: str) -> None:
    seed_name, parse = _TARGETS[name]
    seed = vector(seed_name)
    if name == "list-body":  # the §6 erratum fixed, CRLF line ends
        seed = seed.replace(b'com"">', b'com">').replace(b"\n", b"\r\n")

    @settings(
        max_examples=120,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_mutated(seed))
    def run(data: bytes) -> None:
        try:
            parse(data)
        except FormatError as exc:
            assert exc.sip_status in (400, 403, 413)

    parse(seed)  # the seed itself is valid
    run()
