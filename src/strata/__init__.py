"""strata: generative media from idea to finished file — generate, select, edit, composite,
enhance, sound & motion, iterate — with every output reproducible from its own metadata."""

__version__ = "0.1.0"
