"""Event handlers of the pm-bridge sender plugin."""
