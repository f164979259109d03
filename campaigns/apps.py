from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self):
        from django.db.models.signals import post_migrate

        from campaigns.operations.periodic import register_periodic_tasks

        post_migrate.connect(register_periodic_tasks, sender=self)
