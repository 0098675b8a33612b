"""pm-bridge sender plugin for the Canvas SDK (see README.md)."""
