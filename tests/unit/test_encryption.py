"""mappings.encryption: which XMPP payloads are end-to-end encrypted (XEP-0380 names them),
and which SIP bodies are S/MIME or PGP/MIME (issue 17 item 4)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from mappings import encryption

NS = "jabber:client"
BODY = f"{{{NS}}}body"
FALLBACK = "I sent you an OMEMO encrypted message but your client doesn't seem to support that."


def children(xml: str) -> list[ET.Element]:
    return list(ET.fromstring(f'<message xmlns="{NS}">{xml}</message>'))


@pytest.mark.parametrize(
    ("payload", "namespace", "name"),
    [
        (
            '<encrypted xmlns="eu.siacs.conversations.axolotl"><header sid="1"><iv>AA==</iv>'
            "</header><payload>Zm9v</payload></encrypted>",
            "eu.siacs.conversations.axolotl",
            "OMEMO",
        ),
        (
            '<encrypted xmlns="urn:xmpp:omemo:2"><header sid="1"/><payload>Zm9v</payload>'
            "</encrypted>",
            "urn:xmpp:omemo:2",
            "OMEMO 2",
        ),
        ('<encrypted xmlns="urn:xmpp:omemo:1"/>', "urn:xmpp:omemo:1", "OMEMO 1"),
        (
            '<openpgp xmlns="urn:xmpp:openpgp:0">BASE64</openpgp>',
            "urn:xmpp:openpgp:0",
            "OpenPGP for XMPP",
        ),
        ('<x xmlns="jabber:x:encrypted">qANQR1DBwU4D</x>', "jabber:x:encrypted", "Legacy OpenPGP"),
    ],
)
def test_payload_elements_are_detected(payload: str, namespace: str, name: str) -> None:
    found = encryption.detect_xmpp(children(f"<body>{FALLBACK}</body>{payload}"), BODY)
    assert found == encryption.Encrypted(namespace, name)


@pytest.mark.parametrize(
    "body", ["?OTRv23?", "?OTR:AAMDJ+MVmSfjFZcAAAAAAQ==.", "?OTR Error: no session"]
)
def test_otr_bodies_are_detected(body: str) -> None:
    found = encryption.detect_xmpp(children(f"<body>{body}</body>"), BODY)
    assert found == encryption.Encrypted(encryption.NS_OTR, "OTR")


def test_plain_messages_are_not_encrypted() -> None:
    assert encryption.detect_xmpp(children("<body>hello ?OTR later</body>"), BODY) is None
    assert encryption.detect_xmpp(children('<x xmlns="jabber:x:signed">sig</x>'), BODY) is None
    # an OTR body outside the stanza's own namespace is not the message body
    assert encryption.detect_xmpp(children('<body xmlns="other">?OTR:x</body>'), BODY) is None


def test_eme_names_the_scheme_and_wins() -> None:
    found = encryption.detect_xmpp(
        children(
            f"<body>{FALLBACK}</body>"
            '<encrypted xmlns="urn:xmpp:omemo:2"/>'
            '<encryption xmlns="urn:xmpp:eme:0" namespace="urn:xmpp:omemo:2"/>'
        ),
        BODY,
    )
    assert found == encryption.Encrypted("urn:xmpp:omemo:2", "OMEMO 2")
    # an unknown scheme: its name attribute, else its namespace
    own = '<encryption xmlns="urn:xmpp:eme:0" namespace="urn:example:e2e" name="Example E2E"/>'
    assert encryption.detect_xmpp(children(own), BODY) == encryption.Encrypted(
        "urn:example:e2e", "Example E2E"
    )
    bare = '<encryption xmlns="urn:xmpp:eme:0" namespace="urn:example:e2e"/>'
    assert encryption.detect_xmpp(children(bare), BODY) == encryption.Encrypted(
        "urn:example:e2e", "urn:example:e2e"
    )


def test_refusal_is_not_acceptable_and_names_the_scheme() -> None:
    err = encryption.refusal(encryption.Encrypted("urn:xmpp:omemo:2", "OMEMO 2"))
    assert err.xmpp_condition == "not-acceptable"
    info = err.to_xmpp()
    assert info.text is not None and "OMEMO 2" in info.text and "SIP" in info.text


@pytest.mark.parametrize(
    ("media", "kind"),
    [
        ("application/pkcs7-mime", "encrypted"),
        ("application/x-pkcs7-mime", "encrypted"),
        ("multipart/encrypted", "encrypted"),
        ("multipart/signed", "signed"),
        ("application/pkcs7-signature", "signed"),
        ("text/plain", None),
        ("message/cpim", None),
    ],
)
def test_sip_protection(media: str, kind: str | None) -> None:
    assert encryption.sip_protection(media) == kind
    if kind is not None:
        reason = encryption.sip_reason(kind)  # type: ignore[arg-type]
        assert "XMPP" in reason and "\r" not in reason and "\n" not in reason


def test_the_sip_validator_refuses_the_same_types_with_the_same_phrases() -> None:
    """A bare S/MIME body is refused by the UAS validator before the pager sees it
    (gateway.sip.validate.GATEWAY_POLICY), one inside CPIM by the pager: same words."""
    from gateway.sip.validate import GATEWAY_POLICY

    assert dict(GATEWAY_POLICY.refused_reasons) == {
        media: encryption.sip_reason(kind) for media, kind in encryption.SIP_PROTECTED.items()
    }
    assert not set(GATEWAY_POLICY.refused_reasons) & GATEWAY_POLICY.content_types
