"""The words the store keeps and every interface accepts (forms, admin API, CSV, CLI), as plain strings so
both store backends agree. The store's schema imports them; they depend on nothing but the cadence registry."""

from __future__ import annotations

from feedsvc.cadences import CADENCES, INSTANT

# Subscriber status: pending until the address is confirmed; the last three end the mail.
STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
INITIAL_STATUS = "pending"

# How often a subscriber gets mail: the names of the cadences.
FREQUENCIES = tuple(CADENCES)
DEFAULT_FREQUENCY = INSTANT

# What mail systems reported about a subscriber (bounces, complaints, mailto unsubscribes) and operator clearances.
MAIL_EVENT_KINDS = ("hard_bounce", "soft_bounce", "complaint", "unsubscribe", "cleared")

# The dashboard account `feedsvc admin password` sets when no --user is given.
DEFAULT_ADMIN_USERNAME = "admin"
