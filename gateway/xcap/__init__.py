"""XCAP (RFC 4825): the buddy list and the authorization rules as data (docs/xcap.md).

Pure core: `errors`, `uri`, `nodes`, `usages`, `caps`, `core`. Glue: `service` (the
documents in the store), `source` (the resource-list server's `ListSource`), `server`
(aiohttp with HTTP Digest).
"""
