"""mappings.resourcelists: RFC 4826 resource-lists (build, hardened parse, schema,
limits with their SIP statuses, expansion with reference loops)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.resourcelists import (
    MEDIA_TYPE,
    NS,
    DisplayName,
    Entry,
    EntryRef,
    External,
    ListItem,
    ListLimits,
    ListLoop,
    ListRefused,
    ListTooLarge,
    ResourceList,
    ResourceLists,
    ResourceListsError,
    build_resource_lists,
    document_resolver,
    expand,
    parse_resource_lists,
)
from mappings.xmlsafe import FormatError, XmlRejected, XmlTooLarge
from tests.unit.listdocs_support import assert_valid, hostile, vector

EXAMPLE = vector("rfc4826-s3.3-resource-lists.xml")
DOC_URI = "resource-lists/users/sip:bill@example.com/index"


def _doc(*items: ListItem, name: str | None = "friends") -> ResourceLists:
    return ResourceLists((ResourceList(name, None, items),))


def test_media_type() -> None:
    assert MEDIA_TYPE == "application/resource-lists+xml"  # RFC 4826 §3.1


def test_rfc4826_example() -> None:
    assert_valid("resource-lists", EXAMPLE)
    doc = parse_resource_lists(EXAMPLE)
    (friends,) = doc.lists
    assert friends.name == "friends" and friends.display_name is None
    bill, ref, close = friends.items
    assert bill == Entry("sip:bill@example.com", DisplayName("Bill Doe"))
    assert isinstance(ref, EntryRef) and ref.ref.startswith("resource-lists/users/sip:bill@")
    assert isinstance(close, ResourceList) and close.name == "close-friends"
    assert close.display_name == DisplayName("Close Friends")
    joe, nancy, marketing = close.items
    assert joe == Entry("sip:joe@example.com", DisplayName("Joe Smith"))
    assert nancy == Entry("sip:nancy@example.com", DisplayName("Nancy Gross"))
    assert isinstance(marketing, External) and marketing.anchor is not None
    assert marketing.display_name == DisplayName("Marketing")
    # Both references point into other lists/documents: unresolved, listed in order.
    expansion = expand(doc, document_resolver(doc, DOC_URI))
    assert [e.uri for e in expansion.entries] == [
        "sip:bill@example.com",
        "sip:joe@example.com",
        "sip:nancy@example.com",
    ]
    assert expansion.unresolved == (ref.ref, marketing.anchor)
    assert_valid("resource-lists", build_resource_lists(doc))
    assert parse_resource_lists(build_resource_lists(doc)) == doc


def test_entry_ref_into_the_same_document_resolves() -> None:
    petri = Entry("sip:petri@example.com", DisplayName("Petri"))
    ref = (
        f"{DOC_URI}/~~/resource-lists/list%5b@name=%22list1%22%5d"
        "/entry%5b@uri=%22sip:petri@example.com%22%5d"
    )
    doc = ResourceLists(
        (
            ResourceList("friends", None, (Entry("sip:bill@example.com"), EntryRef(ref))),
            ResourceList("list1", None, (petri,)),
        )
    )
    friends = doc.lists[0]
    got = expand(friends, document_resolver(doc, DOC_URI))
    assert got.entries == (Entry("sip:bill@example.com"), petri) and got.unresolved == ()
    # The same reference against another document's URI does not resolve.
    other = expand(friends, document_resolver(doc, "resource-lists/users/sip:x@y/index"))
    assert other.unresolved == (ref,)
    # Without a resolver nothing is followed.
    assert expand(friends).unresolved == (ref,)


def test_external_to_a_list_of_the_same_document_and_duplicates() -> None:
    anchor = f"http://xcap.example.com/{DOC_URI}/~~/resource-lists/list%5b@name=%22work%22%5d"
    doc = ResourceLists(
        (
            ResourceList("friends", None, (Entry("sip:a@x", DisplayName("A")), External(anchor))),
            ResourceList("work", None, (Entry("sip:a@x", DisplayName("A2")), Entry("sip:b@x"))),
        )
    )
    got = expand(doc.lists[0], document_resolver(doc, DOC_URI))
    # Unique by URI, first display name wins, document order.
    assert got.entries == (Entry("sip:a@x", DisplayName("A")), Entry("sip:b@x"))
    # An external anchor that only looks like the path (relative, or another host path
    # prefix without '/') does not resolve.
    assert document_resolver(doc, DOC_URI)("x" + anchor) is None
    assert document_resolver(doc, DOC_URI)(anchor.removeprefix("http://xcap.example.com")) is None


def _loop_doc() -> ResourceLists:
    base = f"http://xcap.example.com/{DOC_URI}/~~/resource-lists"
    return ResourceLists(
        (
            ResourceList("a", None, (Entry("sip:1@x"), External(f'{base}/list[@name="b"]'))),
            ResourceList("b", None, (External(f"{base}/list%5b@name=%22a%22%5d"),)),
        )
    )


def test_reference_loop_is_403() -> None:
    doc = _loop_doc()
    with pytest.raises(ListLoop) as info:
        expand(doc.lists[0], document_resolver(doc, DOC_URI))
    assert info.value.sip_status == 403
    # The same loop through the wire format.
    parsed = parse_resource_lists(build_resource_lists(doc))
    with pytest.raises(ListLoop):
        expand(parsed, document_resolver(parsed, DOC_URI))


def test_self_reference_and_nested_self_are_loops() -> None:
    anchor = f'http://h/{DOC_URI}/~~/resource-lists/list[@name="a"]/list[@name="in"]'
    doc = ResourceLists(
        (ResourceList("a", None, (ResourceList("in", None, (External(anchor),)),)),)
    )
    with pytest.raises(ListLoop):
        expand(doc, document_resolver(doc, DOC_URI))


def test_diamond_is_not_a_loop() -> None:
    # Two references to the same list are fine: only a path back into itself loops.
    base = f"http://h/{DOC_URI}/~~/resource-lists"
    doc = ResourceLists(
        (
            ResourceList(
                "a",
                None,
                (External(f'{base}/list[@name="c"]'), External(f"{base}/list%5b@name=%22c%22%5d")),
            ),
            ResourceList("c", None, (Entry("sip:c@x"),)),
        )
    )
    assert expand(doc.lists[0], document_resolver(doc, DOC_URI)).entries == (Entry("sip:c@x"),)


def test_too_many_entries_is_413() -> None:
    limits = ListLimits(max_entries=10)
    body = build_resource_lists(_doc(*(Entry(f"sip:u{i}@x") for i in range(11))))
    with pytest.raises(ListTooLarge) as info:
        parse_resource_lists(body, limits)
    assert info.value.sip_status == 413
    assert len(parse_resource_lists(body, ListLimits(max_entries=11)).lists[0].items) == 11


def test_expansion_beyond_entries_is_413() -> None:
    big = ResourceList("big", None, tuple(Entry(f"sip:u{i}@x") for i in range(50)))
    doc = _doc(External("http://h/other"), name="small")

    def resolve(ref: str) -> ResourceList:
        return big

    with pytest.raises(ListTooLarge):
        expand(doc, resolve, ListLimits(max_entries=49))
    assert len(expand(doc, resolve, ListLimits(max_entries=50)).entries) == 50


def test_bytes_beyond_limit_is_413() -> None:
    body = build_resource_lists(_doc(*(Entry(f"sip:user{i}@example.com") for i in range(40))))
    with pytest.raises(ListTooLarge) as info:
        parse_resource_lists(body, ListLimits(max_bytes=len(body) - 1))
    assert info.value.sip_status == 413
    parse_resource_lists(body, ListLimits(max_bytes=len(body)))


def _nested(depth: int) -> ResourceList:
    lst = ResourceList("leaf", None, (Entry("sip:x@y"),))
    for i in range(depth - 1):
        lst = ResourceList(f"n{i}", None, (lst,))
    return lst


def test_nesting_beyond_depth_is_403() -> None:
    limits = ListLimits(max_depth=4)
    ok = build_resource_lists(ResourceLists((_nested(4),)))
    assert expand(parse_resource_lists(ok, limits), limits=limits).entries == (Entry("sip:x@y"),)
    deep = build_resource_lists(ResourceLists((_nested(5),)))
    with pytest.raises(ListRefused) as info:
        parse_resource_lists(deep, limits)
    assert info.value.sip_status == 403 and not isinstance(info.value, ListLoop)
    for depth in (9, 20, 28):  # default limits: 403 up to xmlsafe's 32 XML levels
        with pytest.raises(ListRefused):
            parse_resource_lists(build_resource_lists(ResourceLists((_nested(depth),))))
    with pytest.raises(XmlRejected):
        parse_resource_lists(build_resource_lists(ResourceLists((_nested(40),))))
    with pytest.raises(ListRefused):  # the same bound when expanding a built model
        expand(ResourceLists((_nested(5),)), limits=limits)


def test_references_count_towards_depth() -> None:
    limits = ListLimits(max_depth=3)
    chain = {f"r{i}": ResourceList(f"l{i}", None, (External(f"r{i + 1}"),)) for i in range(5)}
    with pytest.raises(ListRefused):
        expand(_doc(External("r0")), chain.get, limits)


@pytest.mark.parametrize(
    "body",
    [
        b'<list xmlns="urn:ietf:params:xml:ns:resource-lists"/>',  # wrong root
        b'<resource-lists xmlns="urn:x"/>',  # wrong namespace
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list><entry/></list>'
        b"</resource-lists>",  # entry without uri
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list>'
        b'<entry uri=" "/></list></resource-lists>',  # empty uri
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list><entry-ref/>'
        b"</list></resource-lists>",  # entry-ref without ref
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list><bogus/>'
        b"</list></resource-lists>",  # unknown element in the namespace
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><entry uri="sip:a@b"/>'
        b"</resource-lists>",  # entry outside a list
    ],
)
def test_malformed_is_400(body: bytes) -> None:
    with pytest.raises(ResourceListsError) as info:
        parse_resource_lists(body)
    assert info.value.sip_status == 400


def test_other_namespaces_are_ignored() -> None:
    body = (
        b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists" xmlns:v="urn:v">'
        b'<list v:a="1"><v:x/><entry uri="sip:a@b" v:y="2"><v:z/></entry></list>'
        b"</resource-lists>"
    )
    assert parse_resource_lists(body) == _doc(Entry("sip:a@b"), name=None)


@pytest.mark.parametrize("kind", sorted(hostile(b"resource-lists", NS)))
def test_hostile_xml_gets_a_defined_error(kind: str) -> None:
    body = hostile(b"resource-lists", NS)[kind]
    with pytest.raises(FormatError) as info:
        parse_resource_lists(body)
    expected = 413 if kind == "huge" else 400
    assert info.value.sip_status == expected
    if kind != "huge":
        assert isinstance(info.value, XmlRejected) and not isinstance(info.value, XmlTooLarge)


def test_invalid_models_cannot_be_built() -> None:
    for make in (lambda: Entry(""), lambda: EntryRef(" x"), lambda: External("")):
        with pytest.raises(ResourceListsError):
            make()


# ------------------------------------------------------------------ properties

_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")), min_size=0, max_size=12
)
_uri = st.from_regex(
    r"sips?:[a-z0-9._-]{1,8}@[a-z0-9.-]{1,10}(;[a-z]{1,4}=[a-z0-9]{1,4})?", fullmatch=True
)
_display = st.none() | st.builds(DisplayName, _text, st.none() | st.sampled_from(["en", "de-CH"]))
_leaf: st.SearchStrategy[ListItem] = st.one_of(
    st.builds(Entry, _uri, _display),
    st.builds(EntryRef, _uri.map(lambda u: f"resource-lists/users/{u}/index"), _display),
    st.builds(External, st.none() | _uri.map(lambda u: f"http://xcap.example/{u}"), _display),
)


def _lists(depth: int) -> st.SearchStrategy[ResourceList]:
    items = _leaf if depth == 0 else st.one_of(_leaf, st.deferred(lambda: _lists(depth - 1)))
    return st.builds(
        ResourceList,
        st.none() | _text,
        _display,
        st.lists(items, max_size=4).map(tuple),
    )


_documents = st.builds(ResourceLists, st.lists(_lists(3), max_size=3).map(tuple))


@settings(max_examples=150, deadline=None)
@given(_documents)
def test_round_trip_and_schema_property(doc: ResourceLists) -> None:
    body = build_resource_lists(doc)
    assert_valid("resource-lists", body)
    assert parse_resource_lists(body) == doc
    expansion = expand(doc)
    # Every member appears once, and every unresolved reference was in the document.
    uris = [e.uri for e in expansion.entries]
    assert len(uris) == len(set(uris))
    assert set(uris) == {
        i.uri for lst in doc.lists for s in lst.lists() for i in s.items if isinstance(i, Entry)
    }
