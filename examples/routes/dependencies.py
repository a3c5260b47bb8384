"""
The example app's services, built once per process before the first request
that needs them (SPEC §7): the sqlite3 database (created and seeded on first
use), users, metrics, stock prices, the live chart feeds and auth.
"""

from ._services.auth import Auth
from ._services.database import Database, UserService, default_path
from ._services.feeds import Feeds
from ._services.limits import SendLimit
from ._services.metrics import MetricsService
from ._services.stocks import StockService
from ._services.stream_tokens import ensure_keys


def dependencies(parent):
    path = parent.get("database_path") or default_path()
    ensure_keys(path)
    database = Database(path)
    metrics, stocks = MetricsService(), StockService()
    return {
        "database": database,
        "user_service": UserService(database),
        "metrics_service": metrics,
        "stock_service": stocks,
        "feeds": Feeds(stocks, metrics),
        "auth": Auth(parent.get("auth_tokens")),
        "send_limit": SendLimit(),
    }


def shutdown(deps):
    deps["feeds"].stop()
    deps["database"].close()
