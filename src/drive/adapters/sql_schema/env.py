"""Alembic's environment: run the chain's revisions on the connection Drive passes in.

Drive calls Alembic itself (``chains.upgrade``) inside its own transaction and schema lock,
so there is no alembic.ini and no offline mode; see ``alembic_config``.
"""

from alembic import context

config = context.config
context.configure(
    connection=config.attributes["connection"],
    version_table=config.attributes["version_table"],
)
with context.begin_transaction():
    context.run_migrations()
