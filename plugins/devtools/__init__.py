"""Developer tools: tiny test models."""
