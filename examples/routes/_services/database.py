"""
A real sqlite3 database: a file created and seeded with 10,000 users on
first use, read in batches so that no query ever holds every row.

sqlite3 is embedded and a batch is a local file read of well under a
millisecond, so these calls run on the reactor thread; a networked database
would go through ``twisted.enterprise.adbapi`` instead.
"""

import os
import sqlite3

USERS = 10_000
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Ken", "Radia")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Thompson")


def default_path():
    """``$OXIAN_EXAMPLES_DB``, else ``./data/examples.sqlite3``."""
    return os.environ.get("OXIAN_EXAMPLES_DB") or os.path.join(
        "data", "examples.sqlite3"
    )


class Database:
    """One sqlite3 connection to the examples' database file."""

    def __init__(self, path):
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self.connection = sqlite3.connect(path, check_same_thread=False)
        self.connection.row_factory = sqlite3.Row
        self._seed()

    def _seed(self):
        with self.connection:
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS users ("
                " id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " email TEXT NOT NULL, created_at TEXT NOT NULL)"
            )
            (count,) = self.connection.execute("SELECT count(*) FROM users").fetchone()
            if count:
                return
            self.connection.executemany(
                "INSERT INTO users (id, name, email, created_at) VALUES (?, ?, ?, ?)",
                (_user(n) for n in range(1, USERS + 1)),
            )

    def stream_query(self, name=None, page_size=1000):
        """
        Users (all, or those whose name contains ``name``) as lists of
        dicts, ``page_size`` at a time, from one cursor.
        """
        sql = "SELECT id, name, email, created_at FROM users"
        args = ()
        if name:
            sql += " WHERE name LIKE ?"
            args = (f"%{name}%",)
        cursor = self.connection.execute(sql + " ORDER BY id", args)
        try:
            while batch := cursor.fetchmany(page_size):
                yield [dict(row) for row in batch]
        finally:
            cursor.close()

    def close(self):
        self.connection.close()


class UserService:
    """Users, a page at a time."""

    def __init__(self, database):
        self._db = database

    def find_many(self, page=1, limit=100):
        """Page ``page`` (from 1) of ``limit`` users, in id order."""
        rows = self._db.connection.execute(
            "SELECT id, name, email, created_at FROM users"
            " ORDER BY id LIMIT ? OFFSET ?",
            (limit, (page - 1) * limit),
        ).fetchall()
        return [dict(row) for row in rows]

    def find(self, user_id):
        row = self._db.connection.execute(
            "SELECT id, name, email, created_at FROM users WHERE id = ?", (user_id,)
        ).fetchone()
        return dict(row) if row else None


def _user(n):
    first = FIRST_NAMES[n % len(FIRST_NAMES)]
    last = LAST_NAMES[(n // len(FIRST_NAMES)) % len(LAST_NAMES)]
    day = 1 + n % 28
    return (
        n,
        f"{first} {last}",
        f"{first.lower()}.{last.lower()}{n}@example.com",
        f"2026-01-{day:02d}T12:00:00Z",
    )
