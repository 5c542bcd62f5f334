"""The sandbox gateway: its provider, its own tables and the events it sends."""
