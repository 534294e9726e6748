"""The fake's CDN: every attachment (uploaded by a member or by the bot) is served at a signed URL that expires,
as cdn.discordapp.com does: `/cdn/attachments/{channel}/{attachment}/{name}?ex=<hex expiry>&is=<hex issued>&hm=<hmac>`.

A URL whose signature is missing or wrong answers 403; an expired one answers 404 "This content is no longer
available." The bytes are also readable directly from the store (what a member's client shows).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

from tests.fakes.discord.models import Attachment, snowflake


@dataclass
class Cdn:
    base_url: str = ""
    url_ttl_s: float = 24 * 3600.0  # how long a signed URL works (Discord: about a day)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    files: dict[int, Attachment] = field(default_factory=dict)
    downloads: int = 0
    refused: int = 0

    def _sign(self, path: str, expires: int, issued: int) -> str:
        message = f"{path}|{expires:x}|{issued:x}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def signed_url(self, path: str) -> str:
        issued = int(time.time())
        expires = math.ceil(time.time() + self.url_ttl_s)
        return f"{self.base_url}{path}?ex={expires:x}&is={issued:x}&hm={self._sign(path, expires, issued)}&"

    def store(self, channel_id: int, filename: str, data: bytes, *, content_type: str | None = None,
              description: str | None = None) -> Attachment:
        attachment_id = snowflake()
        path = f"/cdn/attachments/{channel_id}/{attachment_id}/{quote(filename)}"
        width, height = Attachment.describe(data)
        attachment = Attachment(id=attachment_id, filename=filename, data=data, url=self.signed_url(path),
                                content_type=content_type or Attachment.guess_type(filename), width=width,
                                height=height, description=description)
        self.files[attachment_id] = attachment
        return attachment

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/cdn/attachments/{channel_id}/{attachment_id}/{filename}", self._serve)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        try:
            expires = int(request.query.get("ex", ""), 16)
            issued = int(request.query.get("is", ""), 16)
        except ValueError:
            self.refused += 1
            return web.Response(status=403, text="This content is no longer available.")
        expected = self._sign(request.rel_url.raw_path, expires, issued)
        if not hmac.compare_digest(expected, request.query.get("hm", "")):
            self.refused += 1
            return web.Response(status=403, text="This content is no longer available.")
        if time.time() > expires:
            self.refused += 1
            return web.Response(status=404, text="This content is no longer available.")
        attachment = self.files.get(int(request.match_info["attachment_id"]))
        if attachment is None:
            return web.Response(status=404, text="Not Found")
        self.downloads += 1
        return web.Response(body=attachment.data, content_type=attachment.content_type or "application/octet-stream")
