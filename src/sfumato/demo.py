"""The demo account for the embedded quick start: created once, its key kept in the data dir.

``sfumato demo-key`` only reads ``KEY_FILE``: this module imports the database layer when a key
is made, not when it is imported.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sfumato.deps import Deps

DEMO_NAME = "demo"
KEY_FILE = "demo_api_key"


async def ensure_demo_key(deps: Deps) -> str:
    """The demo key, creating the account (and the 0600 key file) if they do not exist yet."""
    from sfumato.accounts import queries as key_queries
    from sfumato.accounts import service as accounts
    from sfumato.errors import NotFound

    path = deps.settings.data_dir / KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        if await key_queries.authenticate(deps.db.driver, key) is not None:
            return key
    async with deps.db.write() as session:
        now = deps.clock.now()
        try:  # names are unique: a demo account whose key file was lost gets a new key
            account = await accounts.find_account(session, DEMO_NAME)
        except NotFound:
            account = await accounts.create_account(session, DEMO_NAME, deps.settings.demo_credits, now)
        issued = await accounts.issue_key(session, account.id, now, name="demo")
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(issued.secret + "\n")
    os.replace(tmp, path)
    return issued.secret
