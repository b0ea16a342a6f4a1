"""Admin pages: users, invites, audit log and outbox."""
