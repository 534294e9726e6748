"""A property of how jobs are shown in Discord: whatever text a member (or a provider's error) puts into a caption,
the message pings nobody but the job's owner, and a status message pings nobody. Each rendered caption is judged as
Discord judges it (tests/fakes/discord/mentions.py), with the allowed_mentions the delivery sends it with, in the
worst case: every id in it is a real member, every role mentionable, and the bot allowed to mention everyone."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.store.models import Job, JobState, Origin, Subject
from cogs._delivery import STATUS_MENTIONS, result_mentions
from cogs._render import failure_caption, nsfw_caption, result_caption, status_line
from tests.fakes.discord.mentions import resolve

BOT, OWNER, OTHER, THIRD = 10, 100, 200, 300
ROLES = {7: {OTHER}, 8: {THIRD, OWNER}}
MEMBERS = {OWNER, OTHER, THIRD}
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)

pieces = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["@everyone", "@here", "@", "<@", "<@&", ">", "!", "\\", "`", "*", "\u200b"]),
    st.sampled_from([BOT, OWNER, OTHER, THIRD, 7, 8]).flatmap(
        lambda i: st.sampled_from([f"<@{i}>", f"<@!{i}>", f"<@&{i}>"])),
)
hostile = st.lists(pieces, max_size=30).map("".join)


def job(state: JobState, operation: str, text: str) -> Job:
    request = {"name": text} if operation == "filter" else {"prompt": text}
    return Job(id=1, subject=Subject.member(1, OWNER), origin=Origin.DISCORD, operation=operation, request=request,
               provider="fal", state=state, cost=1, created_at=NOW, updated_at=NOW, deadline_at=NOW,
               finished_at=NOW if state.terminal else None, error_message=text, token="0" * 20)


def pinged(content: str, allowed: dict[str, object]) -> set[int]:
    return resolve(content, allowed, author=BOT, known_users=MEMBERS | {BOT}, role_members=ROLES,
                   mentionable_roles=set(ROLES), everyone_members=MEMBERS, may_mention_everyone=True,
                   replied_author=BOT).pinged


@settings(max_examples=300, deadline=None)
@given(text=hostile, operation=st.sampled_from(["imagine", "edit", "filter", "tryon"]),
       state=st.sampled_from(list(JobState)))
def test_no_caption_pings_anyone_but_the_owner(text: str, operation: str, state: JobState) -> None:
    shown = job(state, operation, text)
    allowed = result_mentions(shown).to_dict()
    for caption in (result_caption(shown), failure_caption(shown), nsfw_caption(shown)):
        assert pinged(caption, dict(allowed)) <= {OWNER}, caption
    assert pinged(status_line(shown), dict(STATUS_MENTIONS.to_dict())) == set()


def test_the_owner_is_pinged_by_the_result_itself() -> None:
    shown = job(JobState.SUCCEEDED, "imagine", f"<@{OTHER}> @everyone")
    assert pinged(result_caption(shown), dict(result_mentions(shown).to_dict())) == {OWNER}
    # The same caption without the policy would ping everybody: the property above is not vacuous.
    assert pinged(result_caption(shown), {"parse": ["users", "roles", "everyone"]}) == MEMBERS
