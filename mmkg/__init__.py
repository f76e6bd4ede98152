"""mmkg's ground: the vocabulary every stage shares (typed records, the label set), settings, atomic
files and image decoding. It imports nothing of the project, so everything can import it."""

__version__ = "0.1.0"
