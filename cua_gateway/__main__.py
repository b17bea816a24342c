"""`python -m cua_gateway` is the same as the `cua-gateway` command."""

from cua_gateway.cli import main

raise SystemExit(main())
