"""Arquivo's Alembic environment and revisions (``script_location = arquivo:migrations``)."""

#: The newest shipped revision. Kept here so that opening a store whose schema is
#: current does not import Alembic; ``tests/test_migrations.py`` checks that it is the
#: single head of ``versions/``: update it with every new revision.
HEAD_REVISION = "0005"
