"""The PostgreSQL backend: one database (schema) shared by processes on
any number of machines. Needs the ``postgres`` extra (psycopg 3 and
psycopg_pool), imported only when a PostgresStorage is made:
``import task_queue`` works without them.

Layout: ``storage.py`` (the operations: PostgresStorage, its pool, the
retries), ``units.py`` (each operation's transaction body), ``queries.sql``
(named blocks, named as SQLite's where the operation is the same),
``migrations/`` and ``schema.py`` (the schema, numbered, migrated once under
an advisory lock), ``notify.py`` (LISTEN/NOTIFY wake-ups and the change
feed), ``clock.py`` (the server's clock), ``errors.py`` (SQLSTATE -> typed
errors).
"""

from .storage import PostgresStorage

__all__ = ["PostgresStorage"]
