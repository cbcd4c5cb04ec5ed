"""Mail: rendering messages from templates, and sending them (Maildir outbox or SMTP)."""
