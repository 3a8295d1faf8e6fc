"""trust.certificate_names: the names a verified peer certificate asserts (RFC 5922 §7.1)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.registrar.trust import certificate_names

SUBJECT = ((("countryName", "NL"),), (("commonName", "CN.Example.net"),))


@pytest.mark.parametrize(
    ("cert", "names"),
    [
        (None, ()),
        ({}, ()),  # getpeercert() of an unverified certificate
        ({"subject": SUBJECT}, ("cn.example.net",)),
        (
            {"subject": SUBJECT, "subjectAltName": (("DNS", "Proxy.Example.org."),)},
            ("proxy.example.org",),
        ),
        (
            {
                "subject": SUBJECT,
                "subjectAltName": (
                    ("DNS", "a.example.org"),
                    ("IP Address", "192.0.2.1"),
                    ("URI", "sip:B.example.org"),
                    ("URI", "sip:user@c.example.org"),
                    ("DNS", "A.example.org"),
                ),
            },
            ("a.example.org", "b.example.org"),
        ),
        # a subjectAltName without DNS or sip: entries: fall back to the CN
        (
            {"subject": SUBJECT, "subjectAltName": (("IP Address", "192.0.2.1"),)},
            ("cn.example.net",),
        ),
    ],
)
def test_certificate_names(cert: dict[str, Any] | None, names: tuple[str, ...]) -> None:
    assert certificate_names(cert) == names
