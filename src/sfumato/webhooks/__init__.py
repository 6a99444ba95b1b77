"""Webhooks: a task's end POSTed to its (or its account's) URL, signed by the Standard
Webhooks scheme, retried for about a day; an outbox written with the task's end."""
