"""Drop the session foreign key's own index on entries, producers, runs and turns.

Each table has a unique index that starts with ``session_id`` ((session, seq), (session,
producer_id), (session, run_id), (session, message)), which serves the foreign key's lookups
and cascades; the second index was written on every entry, run, producer and turn change for
nothing (issue #20). Only the indexes are dropped: the foreign keys stay as they are (altering
the fields the usual way would re-validate every row on PostgreSQL and copy every table on
SQLite).
"""

import django.db.models.deletion
from django.db import migrations, models

# (model, table, related_name, the index Django named for the foreign key)
SERVED = [
    ("entry", "sessions_app_entry", "entries", "sessions_app_entry_session_id_ad47249b"),
    ("producer", "sessions_app_producer", "producers", "sessions_app_producer_session_id_7efd2e33"),
    ("run", "sessions_app_run", "runs", "sessions_app_run_session_id_2000c1cd"),
    ("turn", "sessions_app_turn", "turns", "sessions_app_turn_session_id_21db3e6d"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0009_fork_checkpoints"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX "{index}" ON "{table}" ("session_id")',
                )
                for _, table, _, index in SERVED
            ],
            state_operations=[
                migrations.AlterField(
                    model_name=model,
                    name="session",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name=related,
                        to="sessions_app.session",
                    ),
                )
                for model, _, related, _ in SERVED
            ],
        ),
    ]
