"""Who may do what and what must not leak: secrets encrypted at rest (encryption) and their key
rotation (key_rotation), where a secret may be sent (destinations), the staff groups and their
permissions (staff_groups), the one permission check of the admin and the API (permissions), and what
may go into a log line (logsafe).

May import: Django only; key_rotation alone reads the models. The models import encryption and
destinations, so they import nothing of the app.
"""
