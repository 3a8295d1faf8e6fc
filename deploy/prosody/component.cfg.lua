-- Prosody: the CPIM gateway as an external component (XEP-0114), on loopback.
--
-- Add this to /etc/prosody/prosody.cfg.lua (or drop it in /etc/prosody/conf.d/ and
-- keep `Include "conf.d/*.cfg.lua"`), then `prosodyctl reload`. It matches
-- deploy/examples/beside-prosody.toml: [xmpp] server/port and [[xmpp.components]].
-- Tested with Prosody 0.12 (docs/interop.md).

-- Global section: the component listener on loopback only. The XEP-0114 stream is
-- plaintext; it must never leave the host (or use a tunnel).
component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }

-- Recommended (global, affects every connection of this Prosody): no Nagle delay on
-- Prosody's writes. With Prosody's default (nagle = true) a small stanza written to the
-- component while an earlier one is unacknowledged waits for the gateway's delayed ACK
-- (40 ms on Linux): measured p99 24-43 ms instead of 6-15 ms for XMPP->SIP at 1,100
-- messages/s (docs/performance.md, round 4).
network_settings = { nagle = false }

-- The gateway's domain. SIP users appear as romeo@sip.example.org. The domain needs
-- a DNS name only if users of other XMPP servers are to reach it (s2s): then add
-- _xmpp-server._tcp.sip.example.org SRV records pointing at this Prosody.
Component "sip.example.org"
    -- The same secret as the gateway's secret/secret_file. Generate one with
    -- `openssl rand -hex 24`; keep this file readable by prosody only.
    component_secret = "replace-with-the-component-secret"
