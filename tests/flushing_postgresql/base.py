"""PostgreSQL as Django ships it, except how a transactional test empties the tables.

Django's flush (after every ``transaction=True`` test) is one ``TRUNCATE`` of every table:
PostgreSQL makes new files for each table and syncs them at commit, about a second for this
project's tables on the test machines, hundreds of times a pass. The tables hold a handful of
rows by then, and ``DELETE`` empties them in a few milliseconds; the foreign keys Django creates
are deferrable, so the order of the statements does not matter. A flush that must restart the
id sequences keeps Django's statement. The test settings select this engine for the
PostgreSQL pass; sites keep Django's.
"""

from __future__ import annotations

from django.db.backends.postgresql import base


class DatabaseOperations(base.DatabaseOperations):
    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if not tables or reset_sequences:
            return super().sql_flush(
                style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        deletes = [f"DELETE FROM {self.quote_name(table)};" for table in tables]
        return ["SET CONSTRAINTS ALL DEFERRED;", *deletes]


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
