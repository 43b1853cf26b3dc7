from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('carts', '0004_store_alerts'),
    ]

    operations = [
        migrations.AddField(
            model_name='reviewitem',
            name='undo_until',
            field=models.DateTimeField(blank=True, help_text="a person's decision may be undone until then (UTC); the visits it names are not billed before (carts.services.review_undo / review_holds_release); empty: final", null=True),
        ),
    ]
