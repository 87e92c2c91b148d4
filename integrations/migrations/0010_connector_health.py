from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0009_connector_auth_kind_from_providers"),
    ]

    operations = [
        migrations.AddField(
            model_name="connector",
            name="last_success_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
