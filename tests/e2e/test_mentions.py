"""Whatever a prompt contains — `<@member>`, `<@&role>`, @everyone, @here — the only member a message of Atelier's
pings is the job's owner, and its status message pings nobody; a retry by someone else pings only them. Checked as
Discord decides it (the fake applies each post's allowed_mentions)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import E2E
from tests.e2e.harness import started_job

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_prompt_with_mentions_pings_only_the_owner_also_on_a_retry(e2e: E2E) -> None:
    alice, bob, carol = await e2e.member("alice"), await e2e.member("bob"), await e2e.member("carol")
    loud = await e2e.guild.create_role("loud")
    loud.mentionable = True
    dave = await e2e.guild.add_member("dave", roles=[loud])
    prompt = f"a fox for {carol.mention} and <@!{dave.id}> <@&{loud.id}> @everyone @here"
    run = await alice.run_command(e2e.channel, "imagine", prompt=prompt)
    job_id = started_job((await run.reply()).content)
    result = await e2e.result(job_id)
    status = e2e.status_message(job_id)
    assert status is not None and status.pinged == set()
    assert carol.mention in result.content  # shown as written...
    # ...pinging nobody else.
    assert result.pinged == {alice.id} and not result.mention_everyone and result.mention_roles == []

    again = started_job((await (await bob.click(result, "Retry")).reply()).content)
    retried = await e2e.result(again)
    assert retried.pinged == {bob.id}
    assert e2e.status_message(again).pinged == set()  # type: ignore[union-attr]
