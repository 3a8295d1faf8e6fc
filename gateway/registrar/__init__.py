"""The registrar for the SIP domains the gateway hosts (RFC 3261 §10) and its pure cores:
bindings (REGISTER, GRUU, outbound), users (the HA1 user file), publish (RFC 3903 event
state compositor), trust (who may send what) and ratelimit (token buckets).

Everything here is pure (time is an argument); the endpoint glue drives it.
"""
