"""Arquivo's Alembic environment and revisions (``script_location = arquivo:migrations``)."""
