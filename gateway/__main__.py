"""`python -m gateway` is the `cpim-gateway` command."""

from gateway.cli import main

raise SystemExit(main())
