"""The blog as an ActivityPub actor: discovery, signed requests, the inbox, and delivery of posts to followers.

Modules: `keys` (the key pair), `objects` (the JSON documents, no I/O), `signatures` (draft-cavage and RFC 9421),
`network` (outgoing HTTP with the private-address guard, actor fetching), `inbox` (what incoming activities do),
`outbox` (which posts become Create/Update/Delete), `delivery` (the durable queue of signed POSTs), `web` (routes).
"""
