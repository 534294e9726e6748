"""`atelier` (also `python -m bot`): run image jobs, list filters, check the configuration.

Exit codes: 0 success; 1 the job ran and failed; 2 refused before anything was sent; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
from pydantic import ValidationError

from bot.errors import AtelierError, ConfigError, InputError, ProviderError, QuotaError
from bot.images import extension_for
from bot.inputs import read_image
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
from bot.progress import ProgressLine
from bot.providers.base import Provider
from bot.providers.polling import PollSchedule, wait_for_result
from bot.providers.registry import Providers, build_providers
from bot.providers.status import Cancelled, Failed, JobStatus, Succeeded
from bot.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 2, 130

log = logging.getLogger("atelier")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


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
    e.add_argument("--seed", type=int)
    e.add_argument("--size", type=str)
    e.add_argument("--count", type=int, default=1)
    e.add_argument("--steps", type=int)
    e.add_argument("--guidance", type=float)
    e.add_argument("--format", dest="output_format", choices=("jpeg", "png"))
    common(e)
    i = ops.add_parser("imagine", help="an image from a prompt")
    i.add_argument("--prompt", required=True)
    i.add_argument("--size", type=str)
    i.add_argument("--seed", type=int)
    i.add_argument("--count", type=int, default=1)
    common(i)

    sub.add_parser("filters", help="list the filters the configured providers offer")
    sub.add_parser("doctor", help="check settings and whether each provider's key is accepted")
    return parser


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
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "job":
        return asyncio.run(_job_main(args, settings))
    if args.command == "filters":
        return asyncio.run(_filters(settings))
    if args.command == "doctor":
        return asyncio.run(_doctor(settings))
    parser.print_help(sys.stderr)
    print("\natelier: the Discord bot itself is not part of this build yet; use `atelier job ...`.",
          file=sys.stderr)
    return EXIT_REFUSED


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
    if op is Operation.FILTER:
        image = await read_image(args.image, limits=limits, session=session)
        return FilterRequest(image=image, name=args.name.strip())
    if op is Operation.TRYON:
        person = await read_image(args.person, limits=limits, session=session, label="person image")
        garment = await read_image(args.garment, limits=limits, session=session, label="garment image")
        mask: Mask = args.mask
        return TryonRequest(person=person, garment=garment, mask=mask)
    size = Size.parse(args.size) if args.size else None
    if op is Operation.EDIT:
        if len(args.image) > 4:
            raise InputError("edit takes at most 4 images.")
        images = tuple([await read_image(src, limits=limits, session=session) for src in args.image])
        return EditRequest(images=images, prompt=args.prompt, size=size, seed=args.seed, count=args.count,
                           steps=args.steps, guidance=args.guidance, output_format=args.output_format)
    return ImagineRequest(prompt=args.prompt, size=size, seed=args.seed, count=args.count)


async def _job_main(args: argparse.Namespace, settings: Settings) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    started = time.monotonic()
    result: dict[str, Any] = {"job_id": None, "provider": args.provider, "state": "failed", "files": [],
                              "seed": None, "elapsed_s": 0.0, "error": None}
    code = EXIT_FAILED
    async with aiohttp.ClientSession() as session:
        providers = build_providers(settings, session)
        try:
            code = await _run_job(args, settings, session, providers, result)
        except (InputError, ConfigError, QuotaError) as exc:
            result["error"] = str(exc)
            code = EXIT_REFUSED
        except asyncio.CancelledError:
            result["state"] = "cancelled"
            result["error"] = "interrupted"
            code = EXIT_INTERRUPTED
        except AtelierError as exc:
            result["error"] = str(exc)
            code = EXIT_FAILED
    result["elapsed_s"] = round(time.monotonic() - started, 3)
    _emit(result)
    if result["error"]:
        print(f"atelier: {result['error']}", file=sys.stderr)
    return code


async def _run_job(args: argparse.Namespace, settings: Settings, session: aiohttp.ClientSession,
                   providers: Providers, result: dict[str, Any]) -> int:
    operation = Operation(args.operation)
    provider = providers.choose(operation, args.provider)
    result["provider"] = provider.name
    request = await build_request(args, settings, session)
    await provider.validate(request)
    progress = ProgressLine(sys.stderr)
    schedule = PollSchedule(initial_s=settings.poll_initial_s, max_s=settings.poll_max_s)
    async with provider.slots:
        handle = await provider.submit(request)
        result["job_id"] = f"{provider.name}:{handle.remote_id}"
        try:
            status = await wait_for_result(
                provider, handle, deadline=time.monotonic() + settings.job_deadline_s, schedule=schedule,
                on_status=progress.update,
            )
        except asyncio.CancelledError:
            await _cancel_quietly(provider, handle)
            raise
        finally:
            progress.close()
    return await _finish(args, provider, status, result)


async def _cancel_quietly(provider: Provider, handle: Any) -> None:
    try:
        await asyncio.wait_for(provider.cancel(handle), timeout=10)
    except (AtelierError, TimeoutError) as exc:
        log.warning("could not cancel %s job %s: %s", provider.name, handle.remote_id, exc)


async def _finish(args: argparse.Namespace, provider: Provider, status: JobStatus, result: dict[str, Any]) -> int:
    if isinstance(status, Failed):
        result["error"] = status.reason
        return EXIT_FAILED
    if isinstance(status, Cancelled):
        result["state"] = "cancelled"
        result["error"] = status.reason
        return EXIT_FAILED
    assert isinstance(status, Succeeded)
    out_dir: Path = args.out
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    stem = str(result["job_id"]).replace(":", "-")
    files = []
    for index, output in enumerate(status.outputs):
        image = await provider.fetch(output)
        path = out_dir / f"{stem}-{index + 1}.{extension_for(image.mime)}"
        await asyncio.to_thread(path.write_bytes, image.data)
        files.append(str(path))
    result.update(state="succeeded", files=files, seed=status.seed if status.seed is not None else
                  getattr(args, "seed", None))
    return EXIT_OK


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
        print("local   always available: offline filters on this machine")
        for op in Operation:
            order = [p.name for p in providers.order(op)]
            print(f"{op.value:<8} runs on: {', '.join(order) if order else 'nothing configured'}")
    return EXIT_FAILED if problems else EXIT_OK

