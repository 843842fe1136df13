"""`mixnas dashboard`: serve the web dashboard over a study database."""

from __future__ import annotations

from mixnas.commands.common import DEFAULT_STORAGE


def add_commands(commands) -> None:
    """Add `dashboard` to the top-level subparsers."""
    dashboard = commands.add_parser("dashboard", help="web dashboard over a study database")
    dashboard.add_argument("--storage", default=DEFAULT_STORAGE)
    dashboard.add_argument("--host", default="127.0.0.1")
    dashboard.add_argument("--port", type=int, default=8080)
    dashboard.set_defaults(handler=cmd_dashboard)


def cmd_dashboard(args) -> int:
    from mixnas.dashboard.app import serve
    from mixnas.storage import check_url

    check_url(args.storage)
    serve(args.storage, host=args.host, port=args.port)
    return 0
