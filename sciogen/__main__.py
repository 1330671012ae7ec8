"""``python -m sciogen``: the same as the ``sciogen`` command."""

from sciogen.cli import main

raise SystemExit(main())
