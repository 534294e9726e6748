"""Who a message pings, as Discord decides it from the content and the message's `allowed_mentions`
(discord.com/developers/docs/resources/message#allowed-mentions-object).

- Without `allowed_mentions`, everything in the content is parsed: users, roles, @everyone/@here.
- With it, only the types in `parse` are, plus the ids listed in `users`/`roles`; naming a type in `parse` and
  listing ids of that type is a 400 (50035). `replied_user` (default false) decides whether a reply pings the author
  of the message it replies to; without `allowed_mentions` a reply pings them.
- A role is pinged only if it is mentionable or the author may mention everyone; @everyone and @here only if the
  author may mention everyone. Nobody is pinged by their own message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

USER = re.compile(r"<@!?(\d+)>")
ROLE = re.compile(r"<@&(\d+)>")
EVERYONE = re.compile(r"@(everyone|here)")
ALL_TYPES = frozenset({"users", "roles", "everyone"})


class InvalidAllowedMentions(ValueError):
    pass


@dataclass
class Mentions:
    users: list[int] = field(default_factory=list)  # the message's `mentions`
    roles: list[int] = field(default_factory=list)  # `mention_roles`
    everyone: bool = False  # `mention_everyone`
    pinged: set[int] = field(default_factory=set)  # every member notified


def resolve(content: str, allowed: Mapping[str, Any] | None, *, author: int, known_users: set[int],
            role_members: Mapping[int, set[int]], mentionable_roles: set[int], everyone_members: set[int],
            may_mention_everyone: bool, replied_author: int | None = None) -> Mentions:
    if allowed is None:
        parse, users_allowed, roles_allowed, replied = set(ALL_TYPES), set(), set(), True
    else:
        parse = set(allowed.get("parse") or [])
        users_allowed = {int(u) for u in allowed.get("users") or []}
        roles_allowed = {int(r) for r in allowed.get("roles") or []}
        replied = bool(allowed.get("replied_user", False))
        if parse - ALL_TYPES:
            raise InvalidAllowedMentions(f"unknown parse types {sorted(parse - ALL_TYPES)}")
        if ("users" in parse and users_allowed) or ("roles" in parse and roles_allowed):
            raise InvalidAllowedMentions("parse and an id list name the same type")
    named_users = [int(u) for u in USER.findall(content)]
    users = [u for u in dict.fromkeys(named_users) if u in known_users and ("users" in parse or u in users_allowed)]
    named_roles = [int(r) for r in ROLE.findall(content)]
    roles = [r for r in dict.fromkeys(named_roles) if r in role_members and ("roles" in parse or r in roles_allowed)
             and (r in mentionable_roles or may_mention_everyone)]
    everyone = bool(EVERYONE.search(content)) and "everyone" in parse and may_mention_everyone
    pinged = set(users)
    for role in roles:
        pinged |= role_members[role]
    if everyone:
        pinged |= everyone_members
    if replied_author is not None and replied:
        pinged.add(replied_author)
    pinged.discard(author)
    return Mentions(users=users, roles=roles, everyone=everyone, pinged=pinged)
