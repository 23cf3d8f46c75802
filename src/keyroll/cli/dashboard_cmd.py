"""``keyroll dashboard``: serve the read-only dashboard and ``/metrics`` with uvicorn.

Binds to 127.0.0.1 by default: the dashboard has no login of its own (it shows fingerprints,
never values, but still names every secret and its history), so expose it only behind a proxy
that authenticates. The store is opened per request with the same URL every command uses
(``--store``, ``KEYROLL_STORE`` or ``[store] url``), and checked once before the port opens so
a missing master key is a one-line error, not a failing page.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Annotated

import typer

from keyroll.cli.context import AppContext
from keyroll.cli.output import err
from keyroll.errors import UsageError
from keyroll.net import is_loopback
from keyroll.stores import Store, open_store

__all__ = ["register"]


def _listen(host: str, port: int) -> socket.socket:
    """Bind the port before serving, so a taken port or a bad address is one clear line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host} port {port}: {exc.strerror or exc}; choose "
                         "another --port or --host") from None
    return sock


_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_ANY_ADDRESS = ("0.0.0.0", "::", "[::]", "")  # noqa: S104  (names, compared, never bound here)


def allowed_hosts(host: str, extra: list[str]) -> list[str]:
    """The Host names the dashboard answers: loopback, the bound address, and ``extra``.

    A wildcard bind (0.0.0.0, ::) adds nothing: the names it is reached by are the operator's
    to list with ``--allowed-host``.
    """
    names = list(_LOOPBACK_NAMES)
    if host not in _ANY_ADDRESS:
        names.append(f"[{host.strip('[]')}]" if ":" in host else host)
    for name in extra:
        name = name.strip().lower()
        if not name or any(c in name for c in "/ @") or not name.isprintable():
            raise UsageError(f"--allowed-host {name!r}: give a host name or address, no scheme, "
                             "port or path (e.g. keyroll.example.com)")
        if ":" in name:
            try:
                name = f"[{ipaddress.IPv6Address(name.strip('[]'))}]"
            except ValueError:
                raise UsageError(f"--allowed-host {name!r}: give the name without a port "
                                 "(ports are not compared)") from None
        names.append(name)
    return list(dict.fromkeys(names))


def dashboard(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to bind (default loopback only).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="TCP port.")] = 8080,
    root_path: Annotated[
        str, typer.Option("--root-path", help="URL prefix when served behind a proxy (/keyroll).")
    ] = "",
    access_log: Annotated[bool, typer.Option(help="Log every request (paths only).")] = True,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option("--allowed-host", help="Also answer requests for this Host name (the name "
                     "a proxy serves it under; *.example.com allowed). Repeatable."),
    ] = None,
) -> None:
    """Serve the dashboard: secrets, rotations, audit journal, JSON API, /healthz, /metrics."""
    from keyroll.dashboard import create_app, freeze_startup_objects, require_web

    try:
        import uvicorn
    except ImportError as exc:
        raise require_web(exc) from None
    app: AppContext = ctx.obj
    inventory = app.inventory
    base = app.inventory_path.parent
    url = app.store_url or os.environ.get("KEYROLL_STORE") or inventory.store.url
    app.store.audit_tail()  # fail now (master key, path, server) rather than on every page

    def store_factory() -> Store:
        return open_store(url, base=base, create=False)

    web = create_app(store_factory, inventory, clock=app.clock,
                     allowed_hosts=allowed_hosts(host, allowed_host or []))
    sock = _listen(host, port)
    if not is_loopback(host):
        err().print(f"warning: listening on {host}: the dashboard has no login; put it behind a "
                    "proxy that authenticates", markup=False)
    shown = f"[{host}]" if ":" in host else host
    err().print(f"keyroll dashboard on http://{shown}:{port}{root_path}/ (metrics at /metrics)",
                markup=False)
    config = uvicorn.Config(web, host=host, port=port, root_path=root_path,
                            access_log=access_log, log_level="info", server_header=False)
    freeze_startup_objects()
    with sock:
        uvicorn.Server(config).run(sockets=[sock])


def register(app: typer.Typer) -> None:
    """Add ``keyroll dashboard`` to the CLI."""
    app.command()(dashboard)
