"""mmkg's local Neo4j 5.26 Community server: the Maven-built Java launcher (``launcher/``) and the Python
that builds, starts, stops and inspects it (``manager``). Not the loader: ``kg_loader`` writes to any
Neo4j, this one or the user's own."""
