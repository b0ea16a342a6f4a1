"""Notification outbox, its channels and the dispatcher that drains it."""
