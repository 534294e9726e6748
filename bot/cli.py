"""`atelier` (also `python -m bot`): run image jobs, list filters, check the configuration.

Exit codes: 0 success; 1 the job ran and failed; 2 refused before anything was sent; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import math
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn, assert_never

import aiohttp
from pydantic import ValidationError

from bot.app import App, open_app
from bot.blobs import Blobs, BlobStore
from bot.errors import (
    AtelierError,
    ConfigError,
    InputError,
    ProviderError,
    QuotaError,
    StoreBusyError,
    StoreUnreachableError,
)
from bot.forget_cli import add_forget_parser, forget_main
from bot.images import extension_for
from bot.inputs import read_image
from bot.jobs import JobNotFoundError, RunnerConfig
from bot.money.cli import add_usage_parser, price_lines, print_usage
from bot.operations import (
    MASKS,
    EditRequest,
    FilterRequest,
    ImagineRequest,
    Mask,
    Operation,
    Request,
    Size,
    TryonRequest,
)
from bot.ops.logs import configure as configure_logging
from bot.progress import ProgressLine
from bot.providers.base import MAX_COUNT
from bot.providers.registry import Providers, build_providers
from bot.providers.retirement import ModelProbe
from bot.settings import Settings
from bot.store import migrate_database
from bot.store.models import Job, JobState, Origin, Subject
from bot.webhooks.fal_signature import FalSignatureVerifier

EXIT_OK, EXIT_FAILED, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 130
# After Ctrl-C, how long recording the cancel may wait for a database another program has locked.
CANCEL_RECORD_S = 3.0

log = logging.getLogger("atelier")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high], refused as a usage error (exit 2), never a traceback."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            wanted = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {value}")
        return value
    parse.__name__ = "number"  # argparse names the type in its own messages
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")
    return value


_COUNT = _int_at_least(1, MAX_COUNT)
_NON_NEGATIVE = _int_at_least(0)
_POSITIVE = _int_at_least(1)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="atelier", description="Atelier: image jobs on third-party image APIs.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    job = sub.add_parser("job", help="run one image job and save its outputs")
    ops = job.add_subparsers(dest="operation", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--provider", help="provider to use (default: the first configured for the operation)")
        p.add_argument("--out", default="out", type=Path, help="directory for the output images (default ./out)")
        p.add_argument("--user", default=None, help="whose quota the job counts against (default: OS user)")

    f = ops.add_parser("filter", help="restyle a photo with a named filter")
    f.add_argument("--image", required=True, help="local path or http(s) URL")
    f.add_argument("--name", required=True, help="filter name (see `atelier filters`)")
    common(f)
    t = ops.add_parser("tryon", help="put the garment from one photo onto the person in another")
    t.add_argument("--person", required=True)
    t.add_argument("--garment", required=True)
    t.add_argument("--mask", default="overall", choices=MASKS)
    common(t)
    e = ops.add_parser("edit", help="change 1-4 images by a text prompt")
    e.add_argument("--image", required=True, action="append", help="repeat for up to 4 images")
    e.add_argument("--prompt", required=True)
    e.add_argument("--seed", type=_NON_NEGATIVE)
    e.add_argument("--size", type=str)
    e.add_argument("--count", type=_COUNT, default=1)
    e.add_argument("--steps", type=_POSITIVE)
    e.add_argument("--guidance", type=_positive_float)
    e.add_argument("--format", dest="output_format", choices=("jpeg", "png"))
    common(e)
    i = ops.add_parser("imagine", help="an image from a prompt")
    i.add_argument("--prompt", required=True)
    i.add_argument("--size", type=str)
    i.add_argument("--seed", type=_NON_NEGATIVE)
    i.add_argument("--count", type=_COUNT, default=1)
    common(i)

    _add_job_control(ops)
    add_usage_parser(sub)
    add_forget_parser(sub)

    jobs = sub.add_parser("jobs", help="recent jobs")
    jobs.add_argument("--user", help="whose jobs (default: the OS user)")
    jobs.add_argument("--guild", help="a Discord guild id: list that member's jobs in the guild")
    jobs.add_argument("--all", action="store_true", help="every user's jobs")
    jobs.add_argument("--limit", type=_POSITIVE, default=20)
    jobs.add_argument("--json", action="store_true", help="one JSON object per line")

    quota = sub.add_parser("quota", help="show a user's quota, or set an override")
    quota.add_argument("user")
    quota.add_argument("--guild", help="a Discord guild id: the member's quota in that guild")
    quota.add_argument("--daily", type=_NON_NEGATIVE, help="set this user's daily image limit (0 or more)")
    quota.add_argument("--concurrent", type=_NON_NEGATIVE, help="set this user's limit on jobs in flight (0 or more)")

    _add_process_parsers(sub)
    sub.add_parser("filters", help="list the filters the configured providers offer")
    sub.add_parser("doctor", help="check settings and whether each provider's key is accepted")
    return parser


def _add_process_parsers(sub: Any) -> None:
    """The long-running processes, and preparing the database they share."""
    sub.add_parser("run", help="start the Discord bot (also what no subcommand does)")
    sub.add_parser("worker", help="run and deliver jobs other processes left, with no gateway (see README)")
    db = sub.add_parser("db", help="the database DATABASE_URL names")
    db_ops = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    db_ops.add_parser("migrate", help="bring its schema up to this version of Atelier, then exit")


def _add_job_control(ops: Any) -> None:
    """`atelier job resume` and `atelier job cancel`: acting on a job that already exists."""
    r = ops.add_parser("resume", help="finish a job whose `atelier job` process died (never resubmits)")
    r.add_argument("id", type=_POSITIVE)
    r.add_argument("--out", default="out", type=Path)
    c = ops.add_parser("cancel", help="cancel a command-line job (at the provider where its API allows)")
    c.add_argument("id", type=_POSITIVE)
    c.add_argument("--user", default=None, help="whose job it is (default: the OS user)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _refuse_usage(argv, str(exc))
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]).upper()
        message = f"configuration error: {where}: {first['msg']}"
        if args.command == "job":
            _emit({"job_id": None, "provider": None, "state": "failed", "files": [], "seed": None,
                   "elapsed_s": 0.0, "error": message})
        print(f"atelier: {message}", file=sys.stderr)
        return EXIT_REFUSED
    configure_logging(settings.log_level, settings.log_format)
    try:
        return asyncio.run(_dispatch(args, settings))
    except KeyboardInterrupt:  # commands without their own Ctrl-C handling (`jobs`, `quota`, `doctor`, ...)
        return EXIT_INTERRUPTED
    except (ConfigError, StoreBusyError) as exc:  # e.g. `atelier quota` while another program locks the database
        print(f"atelier: {exc}", file=sys.stderr)
        return EXIT_REFUSED


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "job":
        return await _job_main(args, settings)
    if args.command == "jobs":
        return await _jobs_main(args, settings)
    if args.command == "quota":
        return await _quota_main(args, settings)
    if args.command == "filters":
        return await _filters(settings)
    if args.command == "doctor":
        return await _doctor(settings)
    if args.command == "usage":
        return await _usage_main(args, settings)
    if args.command == "db":
        return await _db_main(settings)
    if args.command == "forget":
        return await _forget_main(args, settings)
    return await _serve_main(args.command, settings)


def _refuse_usage(argv: list[str], message: str) -> int:
    if argv[:1] == ["job"]:
        _emit({"job_id": None, "provider": None, "state": "failed", "files": [], "seed": None,
               "elapsed_s": 0.0, "error": message})
    print(message, file=sys.stderr)
    return EXIT_REFUSED


def _emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


# --- atelier job ------------------------------------------------------------------------------------------


async def build_request(args: argparse.Namespace, settings: Settings, session: aiohttp.ClientSession) -> Request:
    limits = settings.image_limits
    op = Operation(args.operation)
    match op:
        case Operation.FILTER:
            image = await read_image(args.image, limits=limits, session=session)
            return FilterRequest(image=image, name=args.name.strip())
        case Operation.TRYON:
            person = await read_image(args.person, limits=limits, session=session, label="person image")
            garment = await read_image(args.garment, limits=limits, session=session, label="garment image")
            mask: Mask = args.mask
            return TryonRequest(person=person, garment=garment, mask=mask)
        case Operation.EDIT:
            size = Size.parse(args.size) if args.size else None
            if len(args.image) > 4:
                raise InputError("edit takes at most 4 images.")
            images = tuple([await read_image(src, limits=limits, session=session) for src in args.image])
            return EditRequest(images=images, prompt=args.prompt, size=size, seed=args.seed, count=args.count,
                               steps=args.steps, guidance=args.guidance, output_format=args.output_format)
        case Operation.IMAGINE:
            return ImagineRequest(prompt=args.prompt, size=Size.parse(args.size) if args.size else None,
                                  seed=args.seed, count=args.count)
        case _:
            assert_never(op)


class CliDelivery:
    """Delivers a command-line job by writing its images under --out; rewriting the same files is harmless."""

    def __init__(self, blobs: Blobs, out_dir: Path) -> None:
        self.blobs = blobs
        self.out_dir = out_dir
        self.files: dict[int, list[str]] = {}

    async def deliver(self, job: Job) -> None:
        await asyncio.to_thread(self.out_dir.mkdir, parents=True, exist_ok=True)
        files = []
        for index, output in enumerate(job.outputs, start=1):
            data = await self.blobs.get(output.sha256)
            path = self.out_dir / f"{job.id}-{index}.{extension_for(output.mime)}"
            await asyncio.to_thread(_write_atomically, path, data)
            files.append(str(path))
        self.files[job.id] = files


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def _job_result(job: Job, files: list[str]) -> dict[str, Any]:
    """The JSON line's fields that come from the job (elapsed_s is the caller's)."""
    return {"job_id": job.id, "provider": job.provider, "state": _public_state(job.state), "files": files,
            "seed": job.seed, "error": job.error_message}


def _public_state(state: JobState) -> str:
    return state.value if state.terminal else "failed"


async def _job_main(args: argparse.Namespace, settings: Settings) -> int:
    if args.operation == "resume":
        return await _resume_main(args, settings)
    if args.operation == "cancel":
        return await _cancel_main(args, settings)
    started = time.monotonic()
    result: dict[str, Any] = {"job_id": None, "provider": args.provider, "state": "failed", "files": [],
                              "seed": None, "elapsed_s": 0.0, "error": None}
    subject = Subject.cli(args.user or _os_user())
    progress = ProgressLine(sys.stderr)
    interrupted = _interruptible()
    delivery = CliDelivery(BlobStore(Path()), args.out)

    async def run() -> int:
        async with open_app(settings, deliverers={"cli": delivery}, config=RunnerConfig(adopt=False)) as app:
            delivery.blobs = app.blobs
            await _recover_abandoned(app)
            app.runner.add_listener(progress.update_event)
            try:
                request = await build_request(args, settings, app.session)
                job = await app.runner.create(subject, Origin.CLI, request, provider=args.provider)
            except (InputError, ConfigError, QuotaError, StoreBusyError) as exc:
                result["error"] = str(exc)
                return EXIT_REFUSED
            result["job_id"], result["provider"] = job.id, job.provider
            return await _follow_job(app, job.id, delivery, result, interrupted)

    try:
        code = await _until_interrupted(run(), interrupted, result, recorded=lambda: result["job_id"] is not None)
    except (ConfigError, InputError, StoreBusyError) as exc:  # e.g. the database cannot be opened
        result["error"] = str(exc)
        code = EXIT_REFUSED
    finally:
        progress.close()
    return _report(result, started, code)


async def _until_interrupted(body: Coroutine[Any, Any, int], interrupted: asyncio.Event, result: dict[str, Any],
                             *, recorded: Callable[[], bool]) -> int:
    """Run a command's body so that Ctrl-C is honoured at once, whatever it waits on (an input download, a busy
    database, opening the store). Until `recorded()` (the job exists) an interrupt cancels the body: nothing was
    sent, and the command exits 130. After that the body's own follow loop cancels the job at the provider."""
    task = asyncio.ensure_future(body)
    stop = asyncio.ensure_future(interrupted.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and not recorded():
            task.cancel()
        await asyncio.wait({task})
    finally:
        stop.cancel()
    if not task.cancelled():
        return task.result()
    result["state"] = "cancelled"
    result["error"] = "interrupted (Ctrl-C) before anything was sent"
    if result.get("job_id") is not None:  # recorded just as the interrupt came: a later command settles it
        result["error"] = "interrupted (Ctrl-C) while the job was being recorded"
    return EXIT_INTERRUPTED


def _interruptible() -> asyncio.Event:
    """Ctrl-C and SIGTERM set an event instead of killing the loop, so the job can be cancelled first."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, event.set)
    loop.add_signal_handler(signal.SIGTERM, event.set)
    return event


async def _follow_job(app: App, job_id: int, delivery: CliDelivery, result: dict[str, Any],
                      interrupted: asyncio.Event) -> int:
    waiter = asyncio.ensure_future(app.runner.wait(job_id))
    stop = asyncio.ensure_future(interrupted.wait())
    await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
    if waiter.done() and not waiter.cancelled() and waiter.exception() is not None:
        # The job's worker died (e.g. the database stayed locked past the job's deadline): say so in the line.
        stop.cancel()
        failure = waiter.exception()
        job = await app.store.get_job(job_id)
        assert job is not None
        result.update(_job_result(job, delivery.files.get(job_id, [])))
        if not job.state.terminal:
            result["error"] = str(failure) if isinstance(failure, AtelierError) else "an internal error stopped it"
        return EXIT_OK if job.state is JobState.SUCCEEDED and job_id in delivery.files else EXIT_FAILED
    if not waiter.done():
        stop.cancel()
        try:
            async with asyncio.timeout(CANCEL_RECORD_S):
                await app.runner.cancel(job_id, None, reason="interrupted (Ctrl-C)")
        except TimeoutError:
            # The database is locked by another program, so the cancel cannot be recorded yet. Ctrl-C still means
            # stop now: cancel at the provider all the same; a later command settles the job's row.
            await app.runner.cancel_at_provider(job_id)
            result["error"] = "interrupted (Ctrl-C); cancelled at the provider, not yet recorded (database busy)"
        except AtelierError as exc:
            log.warning("could not cancel job %s: %s", job_id, exc)
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(waiter, timeout=15)
        job = await app.store.get_job(job_id)
        assert job is not None
        noted = result["error"]
        result.update(_job_result(job, delivery.files.get(job_id, [])))
        if not job.state.terminal:
            result["state"] = "cancelled"
            result["error"] = noted or job.error_message
        return EXIT_INTERRUPTED
    stop.cancel()
    job = await app.store.get_job(job_id)
    assert job is not None
    result.update(_job_result(job, delivery.files.get(job_id, [])))
    if job.state is JobState.SUCCEEDED and job_id in delivery.files:
        return EXIT_OK
    if job.state is JobState.SUCCEEDED:
        result["state"] = "failed"
        result["error"] = "the images could not be written under --out"
    return EXIT_FAILED


async def _resume_main(args: argparse.Namespace, settings: Settings) -> int:
    """Finish a command-line job whose process died: poll its stored handle (never resubmit), write outputs."""
    started = time.monotonic()
    delivery = CliDelivery(BlobStore(Path()), args.out)
    result: dict[str, Any] = {"job_id": args.id, "provider": None, "state": "failed", "files": [], "seed": None,
                              "elapsed_s": 0.0, "error": None}
    interrupted = _interruptible()
    resumed = False

    async def run() -> int:
        nonlocal resumed
        async with open_app(settings, deliverers={"cli": delivery}, config=RunnerConfig(adopt=False)) as app:
            delivery.blobs = app.blobs
            await _recover_abandoned(app, exclude=[args.id])
            job = await app.store.get_job(args.id)
            if job is None or job.origin is not Origin.CLI:
                result["error"] = f"There is no command-line job {args.id}."
                return EXIT_REFUSED
            if not await app.runner.resume(job.id):
                result["error"] = (f"Job {job.id} is being worked by another live process "
                                   f"({job.lease_owner}); try again when it has stopped.")
                return EXIT_REFUSED
            resumed = True
            return await _follow_job(app, job.id, delivery, result, interrupted)

    try:
        code = await _until_interrupted(run(), interrupted, result, recorded=lambda: resumed)
    except (ConfigError, InputError, StoreBusyError) as exc:
        result["error"] = str(exc)
        code = EXIT_REFUSED
    except OSError as exc:
        result["error"] = f"the images could not be written: {exc}"
        code = EXIT_FAILED
    return _report(result, started, code)


def _report(result: dict[str, Any], started: float, code: int) -> int:
    """A job command's end: its one JSON line on stdout (with how long it took), its error on stderr, its code."""
    result["elapsed_s"] = round(time.monotonic() - started, 3)
    _emit(result)
    if result["error"]:
        print(f"atelier: {result['error']}", file=sys.stderr)
    return code

async def _cancel_main(args: argparse.Namespace, settings: Settings) -> int:
    """Cancel one command-line job, whichever process runs it (or none): one JSON line, exit 0 when cancelled."""
    started = time.monotonic()
    result: dict[str, Any] = {"job_id": args.id, "provider": None, "state": "failed", "files": [], "seed": None,
                              "elapsed_s": 0.0, "error": None}
    interrupted = _interruptible()

    async def run() -> int:
        async with open_app(settings, deliverers={}, config=RunnerConfig(adopt=False), start=False) as app:
            await _recover_abandoned(app, exclude=[args.id])
            subject = Subject.cli(args.user or _os_user())
            job = await app.store.get_job(args.id)
            if job is None or job.origin is not Origin.CLI:
                raise JobNotFoundError(f"There is no command-line job {args.id}.")
            done = await app.runner.cancel(args.id, subject, reason="cancelled with `atelier job cancel`")
            result.update(_job_result(done, []))
            result["error"] = None  # the job's own reason says what was asked for
            if done.state is not JobState.CANCELLED:  # it finished just before the cancel arrived
                result["error"] = f"Job {done.id} had already {done.state.value}."
                return EXIT_REFUSED
            return EXIT_OK

    try:
        code = await _until_interrupted(run(), interrupted, result, recorded=lambda: False)
    except (ConfigError, InputError, JobNotFoundError, StoreBusyError) as exc:
        result["error"] = str(exc)
        code = EXIT_REFUSED
    return _report(result, started, code)


async def _recover_abandoned(app: App, *, exclude: Sequence[int] = ()) -> None:
    """Command-line jobs whose `atelier` process was killed would hold their user's slots for ever: settle them
    (Runner.recover_abandoned) and say on stderr what became of each."""
    for job in await app.runner.recover_abandoned(Origin.CLI, exclude=exclude):
        if job.state is JobState.SUCCEEDED:
            what = f"had finished at {job.provider}; `atelier job resume {job.id}` writes its images"
        else:
            what = f"is now {job.state.value} ({job.error_message})"
        print(f"atelier: job {job.id}, whose process had ended, {what}.", file=sys.stderr)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local"


# --- atelier jobs / quota -------------------------------------------------------------------------------------


async def _jobs_main(args: argparse.Namespace, settings: Settings) -> int:
    async with open_app(settings, deliverers={}, config=RunnerConfig(adopt=False), start=False) as app:
        await _recover_abandoned(app)
        subject = None if args.all else _subject(args.user or _os_user(), args.guild)
        jobs = await app.store.list_jobs(subject, limit=args.limit)
    if args.json:
        for job in jobs:
            print(json.dumps({"job_id": job.id, "user": job.subject.user_id, "scope": job.subject.scope,
                              "operation": job.operation, "provider": job.provider, "state": job.state.value,
                              "created_at": job.created_at.isoformat(), "images": len(job.outputs),
                              "error": job.error_message, "undeliverable": job.undeliverable,
                              "images_charged": 0 if job.refunded else job.cost}))
        return EXIT_OK
    if not jobs:
        print("no jobs yet")
    for job in jobs:
        detail = f"{len(job.outputs)} image(s)" if job.outputs else (job.error_message or "")
        if job.undeliverable:
            detail = f"undeliverable (delivery given up); {detail}"
        print(f"{job.id:>6}  {job.created_at:%Y-%m-%d %H:%M}  {job.subject.user_id:<12.12}  {job.operation:<7}  "
              f"{job.provider:<6}  {job.state.value:<10}  {detail[:60]}")
    return EXIT_OK


def _subject(user: str, guild: str | None) -> Subject:
    return Subject.member(guild, user) if guild else Subject.cli(user)


async def _quota_main(args: argparse.Namespace, settings: Settings) -> int:
    subject = _subject(args.user, args.guild)
    async with open_app(settings, deliverers={}, config=RunnerConfig(adopt=False), start=False) as app:
        await _recover_abandoned(app)
        if args.daily is not None or args.concurrent is not None:
            await app.store.set_limit(subject.scope, "member", subject.user_id, daily=args.daily,
                                      concurrent=args.concurrent)
        usage = await app.runner.usage(subject)
    reset = usage.resets_at.strftime("%Y-%m-%d %H:%M UTC")
    print(f"{subject.user_id} ({subject.scope}): {usage.used_today} of {usage.limits.daily} images used today, "
          f"{usage.remaining_today} left; resets {reset}")
    print(f"jobs in flight: {usage.in_flight} of {usage.limits.concurrent}")
    return EXIT_OK


async def _usage_main(args: argparse.Namespace, settings: Settings) -> int:
    async with open_app(settings, deliverers={}, config=RunnerConfig(adopt=False), start=False) as app:
        try:
            await print_usage(app.store, args, now=app.runner.clock())
        except ValueError as exc:
            print(f"atelier: {exc}", file=sys.stderr)
            return EXIT_REFUSED
    return EXIT_OK


async def _forget_main(args: argparse.Namespace, settings: Settings) -> int:
    async with open_app(settings, deliverers={}, config=RunnerConfig(adopt=False), start=False) as app:
        await _recover_abandoned(app)  # a dead `atelier job` of theirs would otherwise count as running
        return await forget_main(args.user, yes=args.yes, store=app.store, blobs=app.blobs, clock=app.runner.clock)


# --- atelier db ------------------------------------------------------------------------------------------------


async def _db_main(settings: Settings) -> int:
    """`atelier db migrate`: what it did, in one line; errors name the URL's scheme at most (it may hold a
    password)."""
    try:
        before, after = await migrate_database(settings.database_url)
    except (ConfigError, StoreUnreachableError, StoreBusyError) as exc:
        print(f"atelier: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if after == before:
        print(f"nothing to do: schema {after}")
    else:
        print(f"applied {after - before} migration(s): schema {before} -> {after}")
    return EXIT_OK


# --- atelier run / worker -------------------------------------------------------------------------------------


async def _serve_main(command: str, settings: Settings) -> int:
    # discord.py is needed only by the long-running processes: job commands start faster without importing it.
    from bot import serving  # noqa: PLC0415

    return await (serving.run_worker(settings) if command == "worker" else serving.run_bot(settings))


# --- atelier filters / doctor ---------------------------------------------------------------------------


async def _filters(settings: Settings) -> int:
    async with aiohttp.ClientSession() as session:
        providers = build_providers(settings, session)
        try:
            filters = await providers.filters()
        except ProviderError as exc:
            print(f"atelier: {exc}", file=sys.stderr)
            return EXIT_FAILED
    width = max((len(f.name) for f in filters), default=4)
    for f in filters:
        print(f"{f.name:<{width}}  {f.provider:<6}  {f.description}")
    return EXIT_OK


async def _doctor(settings: Settings) -> int:
    names = {"glam": "GLAM_API_KEY", "fal": "FAL_KEY", "pixazo": "PIXAZO_API_KEY", "novita": "NOVITA_API_KEY"}
    print("settings: read from the environment and .env: OK")
    problems = 0
    async with aiohttp.ClientSession() as session:
        providers = build_providers(settings, session)
        for name, env in names.items():
            if name not in providers:
                print(f"{name:<7} not configured (set {env} to enable it)")
                continue
            try:
                check = await providers.get(name).check_key()
            except ProviderError as exc:
                print(f"{name:<7} configured; could not be reached: {exc.detail}")
                problems += 1
                continue
            verdict = {True: "key accepted", False: "KEY REJECTED", None: "key not checked"}[check.ok]
            print(f"{name:<7} configured; {verdict}: {check.message}")
            problems += check.ok is False
            problems += await _doctor_model(name, providers)
        print("local   always available: offline filters on this machine")
        for op in Operation:
            order = [p.name for p in providers.order(op)]
            print(f"{op.value:<8} runs on: {', '.join(order) if order else 'nothing configured'}")
        problems += await _doctor_webhooks(settings, session, providers)
    for line in price_lines(settings):  # which prices are sourced, which are stand-ins
        print(line)
    return EXIT_FAILED if problems else EXIT_OK


async def _doctor_model(name: str, providers: Providers) -> int:
    """Where a provider serves a model it may retire, probe its endpoint for free (1 if it is probably gone)."""
    provider = providers.get(name)
    if not isinstance(provider, ModelProbe):
        return 0
    try:
        check = await provider.check_model()
    except ProviderError as exc:
        print(f"{name:<7} model {provider.model}: could not be probed: {exc.detail}")
        return 0
    print(f"{name:<7} model {check.model}: {check.message}")
    return 1 if check.alive is False else 0


async def _doctor_webhooks(settings: Settings, session: aiohttp.ClientSession, providers: Providers) -> int:
    """Webhooks: where providers will call, and whether fal's signing keys can be fetched (1 if not)."""
    if not settings.webhook_public_url:
        print("webhooks off: jobs are polled (set WEBHOOK_PUBLIC_URL to have fal and Novita call the bot)")
        return 0
    print(f"webhooks on: providers call {settings.webhook_public_url}/webhooks/<provider>; the bot listens on "
          f"{settings.webhook_host}:{settings.webhook_port}")
    if "fal" not in providers:
        return 0
    verifier = FalSignatureVerifier(session, settings.fal_jwks_url)
    if await verifier.refresh_keys() and verifier.key_count:
        print(f"fal     webhook keys: {verifier.key_count} fetched from {settings.fal_jwks_url}")
        return 0
    print(f"fal     webhook keys: COULD NOT BE FETCHED from {settings.fal_jwks_url}; fal's calls would be refused")
    return 1

