"""Visit.checkout_due_at: when an exited visit is due for checkout (issue #12 item 3). Visits already stuck in
``exited`` are due now, so the sweeper bills them."""
from django.db import migrations, models
from django.utils import timezone


def backfill(apps, schema_editor):
    Visit = apps.get_model("gates", "Visit")
    Visit.objects.filter(state="exited", checkout_due_at__isnull=True).update(checkout_due_at=timezone.now())


class Migration(migrations.Migration):
    dependencies = [("gates", "0002_entry_pass_guests")]

    operations = [
        migrations.AddField(
            model_name="visit", name="checkout_due_at",
            field=models.DateTimeField(
                blank=True, db_index=True, null=True,
                help_text="wall-clock time (UTC) from which an exited visit is due for checkout; set with the exit, "
                          "in the same transaction, so a visit whose checkout task was lost is found by "
                          "visits_stuck_sweep"),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
