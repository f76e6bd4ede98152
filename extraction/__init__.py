"""The pipeline's stages: reading and validating posts, entity detection, zero-shot typing and relation
extraction (MG-VMoE's adapter and the label-similarity baseline), Parquet staging. Builds on ``models`` and
the ground (``mmkg``); never imports the graph side."""
