"""How the DAGs get a Neo4j driver: the neo4j provider's connection when it is defined, else the
embedded default from the environment (``mmkg.settings``). Imported only inside tasks."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def graph_driver(conn_id: str = "neo4j_default"):
    """(driver, database) for ``conn_id``; the connection's *schema* field names the database."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.providers.neo4j.hooks.neo4j import Neo4jHook

    hook = Neo4jHook(conn_id)
    try:
        driver = hook.get_conn()
        return driver, (hook.connection.schema or None)
    except AirflowNotFoundException:
        from kg_loader.writer import connect
        from mmkg.settings import Neo4jSettings

        settings = Neo4jSettings.from_env()
        log.info("connection %r is not defined; using the embedded Neo4j at %s", conn_id, settings.uri)
        return connect(settings), settings.database
