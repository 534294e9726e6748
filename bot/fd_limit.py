"""The process's file-descriptor limit: raised from the soft limit to the hard one when the bot starts.

Every socket is a descriptor: Discord's gateway and REST calls, provider calls, downloads and the webhook
listener's connections share the soft limit, which is often 1,024 while the hard limit allows far more.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

# Used when the hard limit is "unlimited", which the kernel does not accept as a soft limit.
UNLIMITED_FALLBACK = 1_048_576


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_FALLBACK if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft >= target:
        return soft
    for wanted in (target, 65_536):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            continue
        log.info("file descriptor limit raised from %d to %d", soft, wanted)
        return wanted
    log.warning("could not raise the file descriptor limit from %d (hard limit %s)", soft, hard)
    return soft
