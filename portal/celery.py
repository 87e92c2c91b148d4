"""The Celery application.

With no ``CELERY_BROKER_URL`` the embedded default runs every task in process
(``task_always_eager``), so a laptop needs neither Redis nor a worker.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("lantern")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
