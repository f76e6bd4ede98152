"""mmkg: social-media posts with images -> zero-shot typed multimodal knowledge graph in Neo4j."""

__version__ = "0.1.0"
