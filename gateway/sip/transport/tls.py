"""TLS contexts for SIP over TLS (RFC 3261 §26.2.1, RFC 5922 certificate matching).

Servers present the listener's certificate chain. A listener with `client_ca` also asks
clients for a certificate (CERT_OPTIONAL: a client without one still connects and is an
ordinary, untrusted sender; one that presents a certificate the bundle does not verify
fails the handshake); the names of a verified certificate reach the trust gate through
`IncomingRequest.peer_certificate` (docs/security.md, `sip.trusted_tls_names`).
Clients verify the peer by default: the system trust store, or the CA bundle named by
`[sip.tls_client] ca_file`; `verify = false` turns verification off (tests, labs).
The name checked is the host the target came from (RFC 5922 §7.2: the domain of the
SIP URI), or its IP address for numeric targets.
"""

from __future__ import annotations

import ssl

from gateway.config import ListenerConfig, TlsClientConfig

__all__ = ["client_context", "load_client_ca", "server_context"]


def server_context(listener: ListenerConfig) -> ssl.SSLContext:
    """The context of a TLS listener (certificate chain and key from its config; client
    certificates requested and verified against `client_ca` when it is set)."""
    if listener.certificate is None or listener.private_key is None:
        raise ValueError(f"tls listener {listener.address}:{listener.port} needs a certificate")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(listener.certificate), str(listener.private_key))
    load_client_ca(ctx, listener)
    return ctx


def load_client_ca(ctx: ssl.SSLContext, listener: ListenerConfig) -> None:
    """Apply the listener's `client_ca` to a server context: CERT_OPTIONAL and the bundle
    when set, CERT_NONE otherwise. CAs accumulate in a context's store (OpenSSL cannot
    drop one), so a reload adds to what a running listener trusts."""
    if listener.client_ca is None:
        ctx.verify_mode = ssl.CERT_NONE
        return
    ctx.load_verify_locations(cafile=str(listener.client_ca))
    ctx.verify_mode = ssl.CERT_OPTIONAL


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
