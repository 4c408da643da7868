"""`python -m whospoke_client` is the `whospoke-client` command."""

from .cli import main

raise SystemExit(main())
