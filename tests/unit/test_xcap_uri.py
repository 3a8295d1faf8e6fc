"""XCAP URIs (RFC 4825 §6): document selectors, node selectors, xmlns() bindings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.xcap.errors import XcapError
from gateway.xcap.uri import (
    AttributeSelector,
    DocumentSelector,
    NamespaceSelector,
    Step,
    parse_bindings,
    parse_node_selector,
    parse_xcap_uri,
)

RL = "urn:ietf:params:xml:ns:resource-lists"
CP = "urn:ietf:params:xml:ns:common-policy"
DEFAULTS: dict[str, str | None] = {"resource-lists": RL, "pres-rules": CP, "xcap-caps": None}


def parse(path: str, query: str = "", root: str = "/xcap"):  # type: ignore[no-untyped-def]
    return parse_xcap_uri(path, query, root=root, default_ns=DEFAULTS)


def status(path: str, query: str = "") -> int:
    with pytest.raises(XcapError) as info:
        parse(path, query)
    return info.value.status


def test_document_selectors() -> None:
    uri = parse("/xcap/resource-lists/users/sip:alice@example.com/index")
    assert uri.document == DocumentSelector("resource-lists", "sip:alice@example.com", "index")
    assert uri.node is None
    enc = parse("/xcap/pres-rules/users/sip%3Aalice%40example.com/index")
    assert enc.document.xui == "sip:alice@example.com"
    assert parse("/xcap/xcap-caps/global/index").document == DocumentSelector(
        "xcap-caps", None, "index"
    )
    assert parse("/resource-lists/users/u@d/index", root="/").document.auid == "resource-lists"
    assert enc.document.path == "pres-rules/users/sip:alice@example.com/index"


@pytest.mark.parametrize(
    "path",
    [
        "/other/resource-lists/users/a@b/index",  # outside the root
        "/xcap/unknown-auid/users/a@b/index",
        "/xcap/resource-lists/users/a@b",  # no document name
        "/xcap/resource-lists/users/a@b/dir/index",  # subdirectories are not served
        "/xcap/resource-lists/people/a@b/index",
        "/xcap/resource-lists/users//index",
        "/xcap/resource-lists/users/a@b/..",
        "/xcap/resource-lists/users/a@b/other",  # one document per user and usage: index
        "/xcap/resource-lists/users/%FF@b/index",  # not UTF-8
    ],
)
def test_unknown_documents_are_404(path: str) -> None:
    assert status(path) == 404


def test_steps_positions_attributes_and_terminals() -> None:
    ns = parse_node_selector(
        'resource-lists/list[@name="friends"]/*[2]/entry[3][@uri="sip:b@x"]/@uri', {}, RL
    )
    assert ns.steps == (
        Step(f"{{{RL}}}resource-lists"),
        Step(f"{{{RL}}}list", None, "name", "friends"),
        Step("*", 2),
        Step(f"{{{RL}}}entry", 3, "uri", "sip:b@x"),
    )
    assert ns.terminal == AttributeSelector("uri")
    assert ns.kind == "attribute"
    assert parse_node_selector("ruleset/namespace::*", {}, CP).terminal == NamespaceSelector()
    single = parse_node_selector("a[@v='it\"s &amp; /slash']", {}, None)
    assert single.steps == (Step("a", None, "v", 'it"s & /slash'),)  # "/" inside quotes


def test_prefixes_come_from_xmlns_expressions() -> None:
    bindings = parse_bindings("xmlns(pr=urn:ietf:params:xml:ns:pres-rules)xmlns(x=urn:x)")
    assert bindings == {"pr": "urn:ietf:params:xml:ns:pres-rules", "x": "urn:x"}
    ns = parse_node_selector("ruleset/rule/actions/pr:sub-handling/@x:a", bindings, CP)
    assert ns.steps[-1] == Step("{urn:ietf:params:xml:ns:pres-rules}sub-handling")
    assert ns.terminal == AttributeSelector("{urn:x}a")
    encoded = "xmlns(pr%3Durn%3Aietf%3Aparams%3Axml%3Ans%3Apres-rules)"
    assert parse_bindings(encoded) == {"pr": "urn:ietf:params:xml:ns:pres-rules"}


@pytest.mark.parametrize(
    ("selector", "query"),
    [
        ("p:list", ""),  # unbound prefix
        ("list[", ""),
        ("list[0]", ""),
        ("list[@name=unquoted]", ""),
        ('list[@name="x"][1]', ""),  # position comes first (§6.3 by-pos-attr)
        ("list/@", ""),
        ("", ""),
        ("a/" * 40 + "a", ""),  # too many steps
        ("list", "garbage"),
        ('list[@name="unterminated]', ""),
        ("1list", ""),
    ],
)
def test_malformed_node_selectors_are_400(selector: str, query: str) -> None:
    from urllib.parse import quote

    path = "/xcap/resource-lists/users/a@b/index/~~/" + quote(selector, safe="/@:*")
    assert status(path, query) == 400


def test_full_uri_with_node_selector() -> None:
    uri = parse(
        "/xcap/resource-lists/users/sip:a@b/index/~~/resource-lists/list%5B@name=%22f%22%5D"
    )
    assert uri.node is not None and uri.node.steps[-1] == Step(f"{{{RL}}}list", None, "name", "f")
    assert uri.node_text == 'resource-lists/list[@name="f"]'


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,8}", fullmatch=True)
values = st.text(
    st.characters(blacklist_characters='"<&', blacklist_categories=("Cs",)), max_size=12
)


@given(
    st.lists(
        st.tuples(names, st.none() | st.integers(1, 50), st.none() | st.tuples(names, values)),
        min_size=1,
        max_size=6,
    )
)
def test_selectors_round_trip(steps: list[tuple[str, int | None, tuple[str, str] | None]]) -> None:
    text = "/".join(
        name
        + ("" if pos is None else f"[{pos}]")
        + ("" if attr is None else f'[@{attr[0]}="{attr[1]}"]')
        for name, pos, attr in steps
    )
    parsed = parse_node_selector(text, {}, "urn:d")
    assert parsed.steps == tuple(
        Step(
            f"{{urn:d}}{name}",
            pos,
            None if attr is None else attr[0],
            None if attr is None else attr[1],
        )
        for name, pos, attr in steps
    )
