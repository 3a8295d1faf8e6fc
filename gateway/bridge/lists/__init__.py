"""The resource list server (RFC 4662, RFC 5367): one SUBSCRIBE for a whole buddy list.

Pure policy: `source` (where lists come from: the `ListSource` protocol and the
request-contained lists of RFC 5367), `policy` (which SUBSCRIBEs are list subscriptions,
421/415/400/403/413 answers), `view` (RLMI full and partial state, versions), `rate`
(RFC 6446 max-rate and the local minimum interval). Glue: `service.ListServer` (the
notifier dialogs, back-end subscriptions per member, persistence). docs/lists.md.
"""
