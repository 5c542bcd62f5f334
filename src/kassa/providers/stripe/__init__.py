"""Stripe: the gateway on the official SDK, its signature scheme and its events."""
