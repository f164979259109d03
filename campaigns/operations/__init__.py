"""What ops watch and what runs by itself: liveness and readiness facts (health) and the periodic
tasks registered in django-celery-beat (periodic).

May import: Django and Celery only; nothing else of the app imports it but the views, the tasks and
the app's ready().
"""
