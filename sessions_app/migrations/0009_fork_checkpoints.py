"""Forget the checkpoints of forks: before 0009 a fork's fold left out the history it inherits
from its source, so a checkpoint it left holds only its own entries. The next fold starts from
the inherited history and leaves a whole one."""

from django.db import migrations


def forget_fork_checkpoints(apps, schema_editor):
    Session = apps.get_model("sessions_app", "Session")
    forks = Session.objects.filter(forked_from__isnull=False, checkpoint__isnull=False)
    forks.update(checkpoint=None, checkpoint_seq=0)


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0008_session_created_index")]

    operations = [migrations.RunPython(forget_fork_checkpoints, migrations.RunPython.noop)]
