"""The open turns' index by id alone (was (agent, id)), for the claims' oldest-first scan.

A claim asks for turns of one or more agents, oldest first. On (agent, id) PostgreSQL could not
read several agents in id order, and planned the scan over the primary key instead, through
every done turn: 9 ms a claim in issue #20's dispatch benchmark once 3,000 turns were done,
and growing with the table. The partial index by id holds the open turns only, so a claim
reads those. Both indexes are partial (open turns only) and small; building the new one reads
the turns table once.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0010_foreign_keys_served_by_unique_indexes"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="turn",
            name="sessions_app_open_turns",
        ),
        migrations.AddIndex(
            model_name="turn",
            index=models.Index(
                condition=models.Q(("state__in", ["queued", "claimed"])),
                fields=["id"],
                name="sessions_app_open_turns_by_id",
            ),
        ),
    ]
