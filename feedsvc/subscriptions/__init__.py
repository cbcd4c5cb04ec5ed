"""Subscribers: who may become what, and how. Used alike by the web front, the admin API and the CLI.

The rules, in one place:
- an address is validated and normalised once (IDN domains to punycode), and is unique case-insensitively;
- the double opt-in form gives the same outward answer whatever the address's state; it asks for a
  confirmation mail only for new and pending addresses, and for people who unsubscribed and now ask again;
- nothing is ever mailed to anyone but `active` subscribers (the confirmation mail aside);
- a confirmation mail is queued in the same transaction that makes the address pending, and sent through the
  delivery queue with its retries: "check your inbox" is never answered for a mail that could be lost;
- unsubscribed, bounced and complained addresses stay as suppressions: the operator's add/import never
  resubscribes them, only the person themself can, through the form (after a complaint, only once the operator
  cleared it: `feedsvc.mail_events.clear`).

The package by concern: `addresses` (validating what people type), `lifecycle` (the states and who may
change them), `csvfiles` (import and export), `mails` (confirmation and welcome mails). Callers import the
package: `from feedsvc import subscriptions`.
"""

from feedsvc.store.subscribers import Subscriber
from feedsvc.subscriptions.addresses import (
    BIDI_CONTROLS,
    MAX_ADDRESS_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TAGS,
    Address,
    InvalidInput,
    SubscriptionRequest,
    clean_name,
    normalise_address,
    parse_frequency,
    parse_tags,
    subscription_request,
)
from feedsvc.subscriptions.csvfiles import (
    ImportFileError,
    ImportReport,
    decode_csv,
    export_csv,
    import_csv,
    write_csv,
)
from feedsvc.subscriptions.lifecycle import (
    SUPPRESSED,
    AddOutcome,
    AddResult,
    Consent,
    add,
    confirm,
    counts,
    find,
    get,
    remove,
    request_subscription,
    search,
    unsubscribe,
    update_preferences,
)
from feedsvc.subscriptions.mails import send_confirmations, send_welcome

__all__ = [
    "BIDI_CONTROLS",
    "MAX_ADDRESS_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_TAGS",
    "SUPPRESSED",
    "AddOutcome",
    "AddResult",
    "Address",
    "Consent",
    "ImportFileError",
    "ImportReport",
    "InvalidInput",
    "Subscriber",
    "SubscriptionRequest",
    "add",
    "clean_name",
    "confirm",
    "counts",
    "decode_csv",
    "export_csv",
    "find",
    "get",
    "import_csv",
    "normalise_address",
    "parse_frequency",
    "parse_tags",
    "remove",
    "request_subscription",
    "search",
    "send_confirmations",
    "send_welcome",
    "subscription_request",
    "unsubscribe",
    "update_preferences",
    "write_csv",
]
