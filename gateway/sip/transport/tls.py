"""TLS contexts for SIP over TLS (RFC 3261 §26.2.1, RFC 5922 certificate matching).

Servers present the listener's certificate chain and do not ask clients for one.
Clients verify the peer by default: the system trust store, or the CA bundle named by
`[sip.tls_client] ca_file`; `verify = false` turns verification off (tests, labs).
The name checked is the host the target came from (RFC 5922 §7.2: the domain of the
SIP URI), or its IP address for numeric targets.
"""

from __future__ import annotations

import ssl

from gateway.config import ListenerConfig, TlsClientConfig

__all__ = ["client_context", "server_context"]


def server_context(listener: ListenerConfig) -> ssl.SSLContext:
    """The context of a TLS listener (certificate chain and key from its config)."""
    if listener.certificate is None or listener.private_key is None:
        raise ValueError(f"tls listener {listener.address}:{listener.port} needs a certificate")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(listener.certificate), str(listener.private_key))
    return ctx


def client_context(config: TlsClientConfig) -> ssl.SSLContext:
    """The context for outgoing TLS connections; verification on unless disabled."""
    ctx = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=None if config.ca_file is None else str(config.ca_file)
    )
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not config.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
