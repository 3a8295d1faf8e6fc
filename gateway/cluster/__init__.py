"""Several gateway instances over one shared store (issue 21, docs/cluster.md)."""
