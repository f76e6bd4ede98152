"""The top of mmkg: the ``mmkg`` command, the demo and a local Airflow for it. The only package that
wires the others together; nothing in the project imports it (the tests and benchmarks may)."""
