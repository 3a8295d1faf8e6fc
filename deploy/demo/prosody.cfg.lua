-- Prosody for the embedded demo (`make run`): everything on loopback, all
-- state under .state/demo/ in the checkout. scripts/run-demo.sh fills in the
-- @...@ placeholders and writes the result to .state/demo/prosody/prosody.cfg.lua.
run_as_root = @RUN_AS_ROOT@
pidfile = "@STATE@/prosody/prosody.pid"
data_path = "@STATE@/prosody/data"
log = { { levels = { min = "info" }, to = "file", filename = "@STATE@/prosody/prosody.log" } }

admins = { }
modules_enabled = {
    "roster"; "saslauth"; "tls"; "disco"; "ping"; "version"; "uptime"; "time";
    "posix"; "carbons"; "pep"; "private"; "vcard_legacy"; "blocklist"; "offline";
}
modules_disabled = { "s2s"; "s2s_auth_certs" }

-- Fixed, documented endpoints (README): c2s 127.0.0.1:5222, component 127.0.0.1:5347.
c2s_ports = { 5222 }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { }
component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }
network_settings = { nagle = false } -- no 40 ms Nagle/delayed-ACK stalls (deploy/prosody)
s2s_ports = { }
s2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }

authentication = "internal_hashed"
-- Loopback demo: STARTTLS is offered (self-signed) but not required.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
ssl = { certificate = "@STATE@/tls/demo.crt"; key = "@STATE@/tls/demo.key" }

VirtualHost "localhost"

-- The gateway (XEP-0114). Secret shared with deploy/demo/gateway.toml.
Component "sip.localhost"
    component_secret = "demo-component-secret"
