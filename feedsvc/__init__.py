"""feedsvc: feeds and email newsletters for a folder of blog posts."""

__version__ = "0.1.0"
