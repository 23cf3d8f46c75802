"""keyroll's command line (typer). Needs Python 3.11+ (``tomllib``); the runtime runs on 3.10."""

import sys

if sys.version_info < (3, 11):  # noqa: UP036  # pragma: no cover  (the package installs on 3.10)
    sys.stderr.write("keyroll: the CLI and the rotation engine need Python 3.11 or newer; this is "
                     f"{sys.version.split()[0]} (the runtime library, `import keyroll`, runs on "
                     "3.10)\n")
    raise SystemExit(2)
