"""The pure XCAP core (RFC 4825 §7, §8, §11): documents, elements, attributes, ETags,
conditional requests, every conflict report (validated against the RFC's XSD), limits
and hostile bodies."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.xcap.caps import caps_document
from gateway.xcap.core import (
    ATT_MEDIA_TYPE,
    EL_MEDIA_TYPE,
    NS_MEDIA_TYPE,
    Preconditions,
    Reply,
    Stored,
    etag_of,
    handle,
)
from gateway.xcap.errors import ERROR_MEDIA_TYPE, XcapError, no_parent, uniqueness_failure
from gateway.xcap.uri import parse_xcap_uri
from gateway.xcap.usages import usages
from mappings.resourcelists import Entry, ResourceList, ResourceLists, build_resource_lists
from tests.unit.listdocs_support import assert_valid, hostile

USAGES = usages()
DEFAULTS = {k: u.default_ns for k, u in USAGES.items()}
RL_MIME = "application/resource-lists+xml"
PR_MIME = "application/auth-policy+xml"
DOC = "/xcap/resource-lists/users/sip:alice@example.com/index"
RULES = "/xcap/pres-rules/users/sip:alice@example.com/index"
LISTS = b"""<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="friends">
    <entry uri="sip:bob@example.com"><display-name>Bob</display-name></entry>
    <entry uri="sip:carol@example.com"/>
  </list>
  <list name="work"/>
</resource-lists>
"""
PRES_RULES = b"""<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules"
    xmlns:cr="urn:ietf:params:xml:ns:common-policy">
  <cr:rule id="a1">
    <cr:conditions><cr:identity><cr:one id="sip:bob@example.com"/></cr:identity></cr:conditions>
    <cr:actions><sub-handling>allow</sub-handling></cr:actions>
  </cr:rule>
</cr:ruleset>
"""


def sel(*steps: str) -> str:
    return "/~~/" + "/".join(quote(s, safe="@:*") for s in steps)


FRIENDS = 'list[@name="friends"]'


def request(
    method: str,
    path: str,
    current: Stored | bytes | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    max_bytes: int = 64 * 1024,
    **conditions: str,
) -> Reply:
    p, _, q = path.partition("?")
    uri = parse_xcap_uri(p, q, root="/xcap", default_ns=DEFAULTS)
    if isinstance(current, bytes):
        current = Stored(current, etag_of(current))
    return handle(
        method,
        uri,
        current,
        USAGES[uri.document.auid],
        body=body,
        content_type=content_type,
        preconditions=Preconditions(**conditions),
        max_bytes=max_bytes,
    )


def after(reply: Reply) -> Stored:
    assert reply.store is not None, reply
    assert reply.etag == etag_of(reply.store)
    return Stored(reply.store, reply.etag)


def conflict(reply: Reply, tag: str) -> None:
    assert reply.status == 409, reply
    assert reply.content_type == ERROR_MEDIA_TYPE
    assert_valid("xcap-error", reply.body)
    root = etree.fromstring(reply.body)
    assert [etree.QName(c).localname for c in root] == [tag]
    assert not reply.writes


# ------------------------------------------------------------------ documents


def test_document_put_get_replace_delete() -> None:
    created = request("PUT", DOC, None, LISTS, RL_MIME)
    assert (created.status, created.store, created.etag) == (201, LISTS, etag_of(LISTS))
    got = request("GET", DOC, LISTS)
    assert (got.status, got.body, got.content_type, got.etag) == (
        200,
        LISTS,
        RL_MIME,
        etag_of(LISTS),
    )
    replaced = request("PUT", DOC, LISTS, LISTS.replace(b"work", b"home"), RL_MIME)
    assert replaced.status == 200 and replaced.etag != etag_of(LISTS)
    assert request("DELETE", DOC, LISTS) == Reply(200, delete=True)
    assert request("GET", DOC, None).status == 404
    assert request("DELETE", DOC, None).status == 404


def test_pres_rules_document() -> None:
    assert request("PUT", RULES, None, PRES_RULES, PR_MIME).status == 201
    assert request("PUT", RULES, None, PRES_RULES, RL_MIME).status == 415
    assert request("PUT", DOC, None, PRES_RULES, RL_MIME).status == 409  # not resource-lists
    # no prefix: the default document namespace, common-policy (RFC 5025 §9.3)
    handling = sel("ruleset", 'rule[@id="a1"]', "actions", "pr:sub-handling")
    query = "?xmlns(pr=urn:ietf:params:xml:ns:pres-rules)"
    got = request("GET", RULES + handling + query, PRES_RULES)
    assert got.status == 200 and b">allow</sub-handling>" in got.body
    put = request(
        "PUT",
        RULES + handling + query,
        PRES_RULES,
        b'<sub-handling xmlns="urn:ietf:params:xml:ns:pres-rules">block</sub-handling>',
        EL_MEDIA_TYPE,
    )
    assert put.status == 200 and b">block</sub-handling>" in after(put).body
    bad = request(
        "PUT",
        RULES + handling + query,
        PRES_RULES,
        b'<sub-handling xmlns="urn:ietf:params:xml:ns:pres-rules">maybe</sub-handling>',
        EL_MEDIA_TYPE,
    )
    conflict(bad, "schema-validation-error")


def test_unknown_methods_and_read_only_caps() -> None:
    caps = caps_document(USAGES.values())
    assert_valid("xcap-caps", caps)
    assert request("POST", DOC, LISTS).status == 405
    assert (
        request(
            "PUT", "/xcap/xcap-caps/global/index", caps, caps, "application/xcap-caps+xml"
        ).status
        == 405
    )
    assert (
        request("GET", "/xcap/xcap-caps/global/index" + sel("xcap-caps", "auids"), caps).status
        == 200
    )


# ------------------------------------------------------------------ elements and attributes


def test_element_get_put_insert_replace_delete() -> None:
    entry = sel("resource-lists", FRIENDS, 'entry[@uri="sip:bob@example.com"]')
    got = request("GET", DOC + entry, LISTS)
    assert got.status == 200 and got.content_type == EL_MEDIA_TYPE
    assert etree.fromstring(got.body).get("uri") == "sip:bob@example.com"
    assert got.etag == etag_of(LISTS)

    dave = sel("resource-lists", FRIENDS, 'entry[@uri="sip:dave@example.com"]')
    ins = request("PUT", DOC + dave, LISTS, b'<entry uri="sip:dave@example.com"/>', EL_MEDIA_TYPE)
    assert ins.status == 201
    doc = after(ins)
    uris = [e.get("uri") for e in etree.fromstring(doc.body).iter("{*}entry")]
    assert uris == ["sip:bob@example.com", "sip:carol@example.com", "sip:dave@example.com"]
    assert request("GET", DOC + dave, doc).status == 200

    first = sel("resource-lists", FRIENDS, "entry[1]")
    pos = request(
        "PUT",
        DOC + sel("resource-lists", 'list[@name="work"]', "entry[1]"),
        doc,
        b'<entry uri="sip:erin@example.com"/>',
        EL_MEDIA_TYPE,
    )
    assert pos.status == 201
    replaced = request(
        "PUT", DOC + first, doc, b'<entry uri="sip:zed@example.com"/>', EL_MEDIA_TYPE
    )
    assert replaced.status == 200
    assert (
        b"sip:zed@example.com" in after(replaced).body and b"sip:bob@" not in after(replaced).body
    )

    deleted = request("DELETE", DOC + dave, doc)
    assert deleted.status == 200 and b"dave" not in after(deleted).body
    assert request("DELETE", DOC + dave, after(deleted)).status == 404
    assert request("GET", DOC + dave, after(deleted)).status == 404


def test_positional_insertion() -> None:
    new = b'<entry uri="sip:new@example.com"/>'
    put = request(
        "PUT", DOC + sel("resource-lists", FRIENDS, "entry[1]"), LISTS, new, EL_MEDIA_TYPE
    )
    # entry[1] existed: replacement; entry[3] is new, after the two others
    assert put.status == 200
    third = request(
        "PUT", DOC + sel("resource-lists", FRIENDS, "entry[3]"), LISTS, new, EL_MEDIA_TYPE
    )
    assert third.status == 201
    root = etree.fromstring(after(third).body)
    assert [e.get("uri") for e in root.iter("{*}entry")][-1] == "sip:new@example.com"
    past = request(
        "PUT", DOC + sel("resource-lists", FRIENDS, "entry[5]"), LISTS, new, EL_MEDIA_TYPE
    )
    conflict(past, "cannot-insert")


def test_attributes() -> None:
    name = sel("resource-lists", FRIENDS, "@name")
    got = request("GET", DOC + name, LISTS)
    assert (got.status, got.body, got.content_type) == (200, b"friends", ATT_MEDIA_TYPE)
    put = request("PUT", DOC + name, LISTS, b"buddies &amp; co", ATT_MEDIA_TYPE)
    assert put.status == 200
    renamed = after(put)
    assert (
        request(
            "GET", DOC + sel("resource-lists", 'list[@name="buddies & co"]', "@name"), renamed
        ).body
        == b"buddies &amp; co"
    )
    new = request(
        "PUT", DOC + sel("resource-lists", 'list[@name="work"]', "@x"), LISTS, b"1", ATT_MEDIA_TYPE
    )
    assert new.status == 201
    assert (
        request(
            "DELETE", DOC + sel("resource-lists", 'list[@name="work"]', "@x"), after(new)
        ).status
        == 200
    )
    assert (
        request("DELETE", DOC + sel("resource-lists", 'list[@name="work"]', "@y"), LISTS).status
        == 404
    )
    assert request("GET", DOC + sel("resource-lists", FRIENDS, "@nope"), LISTS).status == 404
    wrong = request("PUT", DOC + name, LISTS, b"x", "text/plain")
    assert wrong.status == 415


def test_namespace_bindings() -> None:
    got = request("GET", DOC + sel("resource-lists", FRIENDS, "namespace::*"), LISTS)
    assert got.status == 200 and got.content_type == NS_MEDIA_TYPE
    assert etree.fromstring(got.body).nsmap == {None: "urn:ietf:params:xml:ns:resource-lists"}
    assert request("DELETE", DOC + sel("resource-lists", "namespace::*"), LISTS).status == 405


# ------------------------------------------------------------------ conflict reports


def test_every_conflict_report() -> None:
    conflict(request("PUT", DOC, None, b"<resource-lists", RL_MIME), "not-well-formed")
    conflict(request("PUT", DOC, None, LISTS.replace(b"Bob", b"B\xe9b"), RL_MIME), "not-utf-8")
    entry = DOC + sel("resource-lists", FRIENDS, 'entry[@uri="sip:x@y"]')
    conflict(
        request(
            "PUT", entry, LISTS, b'<entry uri="sip:x@y"/><entry uri="sip:z@y"/>', EL_MEDIA_TYPE
        ),
        "not-xml-frag",
    )
    conflict(request("PUT", entry, LISTS, b"just text", EL_MEDIA_TYPE), "not-xml-frag")
    conflict(
        request("PUT", entry, LISTS, b'<?xml version="1.0"?><entry uri="sip:x@y"/>', EL_MEDIA_TYPE),
        "not-xml-frag",
    )
    conflict(
        request("PUT", entry, LISTS, b"<entry uri='sip:x@y'>\xff</entry>", EL_MEDIA_TYPE),
        "not-utf-8",
    )
    att = DOC + sel("resource-lists", FRIENDS, "@name")
    for value in (b"a<b", b"a & b", b"""both ' and " quotes"""):
        conflict(request("PUT", att, LISTS, value, ATT_MEDIA_TYPE), "not-xml-att-value")
    conflict(request("PUT", att, LISTS, b"\xff", ATT_MEDIA_TYPE), "not-utf-8")
    conflict(request("PUT", entry, None, b'<entry uri="sip:x@y"/>', EL_MEDIA_TYPE), "no-parent")
    orphan = DOC + sel("resource-lists", 'list[@name="nope"]', 'entry[@uri="sip:x@y"]')
    conflict(request("PUT", orphan, LISTS, b'<entry uri="sip:x@y"/>', EL_MEDIA_TYPE), "no-parent")
    conflict(
        request(
            "PUT",
            DOC + sel("resource-lists", 'list[@name="nope"]', "@a"),
            LISTS,
            b"v",
            ATT_MEDIA_TYPE,
        ),
        "no-parent",
    )
    conflict(
        request("PUT", entry, LISTS, b'<entry uri="sip:other@y"/>', EL_MEDIA_TYPE), "cannot-insert"
    )
    conflict(
        request("PUT", DOC + sel("ruleset"), LISTS, b"<ruleset/>", EL_MEDIA_TYPE), "cannot-insert"
    )
    conflict(
        request("DELETE", DOC + sel("resource-lists", FRIENDS, "entry[1]"), LISTS), "cannot-delete"
    )
    conflict(request("DELETE", DOC + sel("resource-lists"), LISTS), "cannot-delete")
    dup = DOC + sel("resource-lists", FRIENDS, "entry[3]")
    conflict(
        request("PUT", dup, LISTS, b'<entry uri="sip:bob@example.com"/>', EL_MEDIA_TYPE),
        "uniqueness-failure",
    )
    conflict(
        request("PUT", DOC, None, LISTS.replace(b'"work"', b'"friends"'), RL_MIME),
        "uniqueness-failure",
    )
    conflict(
        request(
            "PUT",
            DOC + sel("resource-lists", FRIENDS, "entry[1]", "@uri"),
            LISTS,
            b"",
            ATT_MEDIA_TYPE,
        ),
        "schema-validation-error",
    )
    deep = (
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
        + b"<list>" * 9
        + b"</list>" * 9
        + b"</resource-lists>"
    )
    conflict(request("PUT", DOC, None, deep, RL_MIME), "constraint-failure")
    conflict(
        request("PUT", RULES, None, PRES_RULES.replace(b'id="a1"', b'id="1a"'), PR_MIME),
        "schema-validation-error",
    )
    two = PRES_RULES.replace(b"</cr:ruleset>", b'<cr:rule id="a1"/></cr:ruleset>')
    conflict(request("PUT", RULES, None, two, PR_MIME), "uniqueness-failure")


def test_error_bodies_follow_the_schema() -> None:
    for exc in (
        no_parent("p", "http://x/xcap/a"),
        uniqueness_failure("u", "f"),
        XcapError(409, 'q"<&', tag="cannot-insert"),
    ):
        assert_valid("xcap-error", exc.body())
    plain = XcapError(404, "gone")
    assert (plain.body(), plain.content_type) == (b"gone\n", "text/plain; charset=utf-8")


# ------------------------------------------------------------------ ETags (§7.11)


def test_conditional_requests() -> None:
    tag = etag_of(LISTS)
    assert request("GET", DOC, LISTS, if_none_match=tag) == Reply(304, etag=tag)
    assert request("GET", DOC, LISTS, if_none_match='"other"').status == 200
    assert request("GET", DOC, LISTS, if_match='"other"').status == 412
    assert request("PUT", DOC, LISTS, LISTS, RL_MIME, if_match=f'"x", {tag}').status == 200
    assert request("PUT", DOC, LISTS, LISTS, RL_MIME, if_match='"stale"').status == 412
    assert request("PUT", DOC, LISTS, LISTS, RL_MIME, if_match=f"W/{tag}").status == 412  # strong
    assert request("PUT", DOC, None, LISTS, RL_MIME, if_match="*").status == 412
    assert request("PUT", DOC, None, LISTS, RL_MIME, if_none_match="*").status == 201
    assert request("PUT", DOC, LISTS, LISTS, RL_MIME, if_none_match="*").status == 412
    assert request("PUT", DOC, LISTS, LISTS, RL_MIME, if_none_match=f"W/{tag}").status == 412
    assert request("DELETE", DOC, LISTS, if_match='"stale"').status == 412
    entry = DOC + sel("resource-lists", FRIENDS, "entry[1]")
    stale = request("DELETE", entry, LISTS, if_match='"stale"')
    assert stale.status == 412 and not stale.writes
    assert request("GET", DOC, LISTS, if_match="not a tag").status == 400


def test_every_write_changes_the_etag() -> None:
    doc = Stored(LISTS, etag_of(LISTS))
    seen = {doc.etag}
    for n in range(5):
        put = request(
            "PUT",
            DOC + sel("resource-lists", FRIENDS, f'entry[@uri="sip:u{n}@x"]'),
            doc,
            f'<entry uri="sip:u{n}@x"/>'.encode(),
            EL_MEDIA_TYPE,
            if_match=doc.etag,
        )
        doc = after(put)
        assert doc.etag not in seen
        seen.add(doc.etag)


# ------------------------------------------------------------------ limits and hostile XML


def test_oversized_bodies_and_results_are_413() -> None:
    big = LISTS.replace(b"Bob", b"B" * 5000)
    assert request("PUT", DOC, None, big, RL_MIME, max_bytes=4096).status == 413
    near = LISTS.replace(b"Bob", b"B" * (4000 - len(LISTS)))
    doc = after(request("PUT", DOC, None, near, RL_MIME, max_bytes=4096))
    grow = request(
        "PUT",
        DOC + sel("resource-lists", 'list[@name="work"]', "@x"),
        doc,
        b"y" * 200,
        ATT_MEDIA_TYPE,
        max_bytes=4096,
    )
    assert grow.status == 413 and not grow.writes
    many = (
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list>'
        + b"".join(f'<entry uri="sip:{n}@x"/>'.encode() for n in range(1001))
        + b"</list></resource-lists>"
    )
    assert request("PUT", DOC, None, many, RL_MIME, max_bytes=256 * 1024).status == 413


@pytest.mark.parametrize(
    "name", sorted(hostile(b"resource-lists", "urn:ietf:params:xml:ns:resource-lists"))
)
def test_hostile_documents_are_refused(name: str) -> None:
    body = hostile(b"resource-lists", "urn:ietf:params:xml:ns:resource-lists")[name]
    reply = request("PUT", DOC, None, body, RL_MIME, max_bytes=64 * 1024)
    assert reply.status in (409, 413) and not reply.writes
    frag = request(
        "PUT",
        DOC + sel("resource-lists", FRIENDS, 'entry[@uri="sip:x@y"]'),
        LISTS,
        body,
        EL_MEDIA_TYPE,
    )
    assert frag.status in (409, 413) and not frag.writes


uris = st.from_regex(r"sip:[a-z]{1,8}@[a-z]{1,8}\.example", fullmatch=True)


@settings(max_examples=40, deadline=None)
@given(st.lists(uris, min_size=1, max_size=8, unique=True), st.lists(uris, max_size=4, unique=True))
def test_round_trip_put_get_delete(first: list[str], added: list[str]) -> None:
    """A document built from the model; elements put one by one are read back as put,
    and deleting them gives back the members we started from."""
    doc_bytes = build_resource_lists(
        ResourceLists((ResourceList("l", None, tuple(Entry(u) for u in first)),))
    )
    doc = after(request("PUT", DOC, None, doc_bytes, RL_MIME))
    fresh = [u for u in added if u not in first]
    for u in fresh:
        path = DOC + sel("resource-lists", 'list[@name="l"]', f'entry[@uri="{u}"]')
        doc = after(request("PUT", path, doc, f'<entry uri="{u}"/>'.encode(), EL_MEDIA_TYPE))
        got = request("GET", path, doc)
        assert etree.fromstring(got.body).get("uri") == u
    for u in fresh:
        doc = after(
            request(
                "DELETE", DOC + sel("resource-lists", 'list[@name="l"]', f'entry[@uri="{u}"]'), doc
            )
        )
    root = etree.fromstring(doc.body)
    assert [e.get("uri") for e in root.iter("{*}entry")] == first
    assert_valid("resource-lists", doc.body)
