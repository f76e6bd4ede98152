"""Reading and validating posts, entity detection, zero-shot typing and relation extraction, staging."""
