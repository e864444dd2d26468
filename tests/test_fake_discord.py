"""The fake Discord itself: protocol details discord.py relies on, and the strictness the
adapter's tests rely on. Raw HTTP and websocket here, so these do not depend on the adapter."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest

from adapters.discord.endpoints import apply_endpoints
from tests.fakes.discord_api import (
    EPHEMERAL,
    MANAGE_GUILD,
    CommandNotAvailable,
    FakeChannel,
    FakeDiscord,
    FakeGuild,
    FakeInteraction,
    FakeUser,
)

GUILD = FakeGuild(id=4001, channels=(FakeChannel(4002, "general"),))
USER = FakeUser(51, "alice")
COMMANDS = [
    {"name": "ping", "description": "Ping", "options": [
        {"type": 3, "name": "word", "description": "A word", "required": True},
        {"type": 4, "name": "times", "description": "How often"}]},
    {"name": "admin", "description": "Admins only", "default_member_permissions": "32",
     "contexts": [0]},
]


class RawGateway:
    """A bare gateway client: enough to identify and read dispatches."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, compressed: bool) -> None:
        self.ws = ws
        self._inflate = zlib.decompressobj() if compressed else None

    async def receive(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=5)
        if msg.type is aiohttp.WSMsgType.BINARY:
            assert self._inflate is not None and msg.data.endswith(b"\x00\x00\xff\xff")
            return json.loads(self._inflate.decompress(msg.data))
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        return json.loads(msg.data)

    async def send(self, payload: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(payload))

    async def dispatch(self, event: str) -> dict[str, Any]:
        while True:
            msg = await self.receive()
            if msg.get("t") == event:
                return msg


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(guilds=[GUILD], attachment_size_limit=1000,
                           max_request_bytes=5000) as server:
        yield server


@pytest.fixture
async def http(fake: FakeDiscord) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=fake.base_url) as session:
        yield session


def bot_headers(fake: FakeDiscord) -> dict[str, str]:
    return {"Authorization": f"Bot {fake.token}"}


@pytest.fixture
async def gateway(fake: FakeDiscord, http: aiohttp.ClientSession) -> AsyncIterator[RawGateway]:
    put = await http.put(f"/api/v10/applications/{fake.application_id}/commands",
                         json=COMMANDS, headers=bot_headers(fake))
    assert put.status == 200
    async with http.ws_connect(fake.gateway_url + "?v=10&encoding=json&compress=zlib-stream") as ws:
        client = RawGateway(ws, compressed=True)
        hello = await client.receive()
        assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
        await client.send({"op": 2, "d": {"token": fake.token, "intents": 1, "properties": {}}})
        ready = await client.dispatch("READY")
        assert ready["d"]["user"]["id"] == str(fake.bot_user.id)
        await client.dispatch("GUILD_CREATE")
        yield client


async def ack(http: aiohttp.ClientSession, interaction: FakeInteraction,
              payload: dict[str, Any]) -> aiohttp.ClientResponse:
    return await http.post(f"/api/v10/interactions/{interaction.id}/{interaction.token}/callback",
                           json=payload)


def files_form(payload: dict[str, Any], sizes: list[int]) -> aiohttp.FormData:
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("payload_json", json.dumps(payload))
    for index, size in enumerate(sizes):
        form.add_field(f"files[{index}]", b"x" * size, filename=f"f{index}.bin",
                       content_type="application/octet-stream")
    return form


async def test_json_is_exactly_application_json_and_tokens_are_checked(
        fake: FakeDiscord, http: aiohttp.ClientSession) -> None:
    good = await http.get("/api/v10/users/@me", headers=bot_headers(fake))
    assert good.status == 200
    assert good.headers["Content-Type"] == "application/json"
    bad = await http.get("/api/v10/users/@me", headers={"Authorization": "Bot nope"})
    assert bad.status == 401
    assert (await bad.json())["message"] == "401: Unauthorized"
    gateway = await http.get("/api/v10/gateway/bot", headers=bot_headers(fake))
    assert (await gateway.json())["url"] == fake.gateway_url


async def test_invalid_commands_are_refused(fake: FakeDiscord,
                                            http: aiohttp.ClientSession) -> None:
    url = f"/api/v10/applications/{fake.application_id}/commands"
    for bad in ([{"name": "Ping", "description": "x"}],
                [{"name": "ping", "description": ""}],
                [{"name": "ping", "description": "x", "options": [
                    {"type": 3, "name": "a", "description": "a"},
                    {"type": 3, "name": "b", "description": "b", "required": True}]}]):
        response = await http.put(url, json=bad, headers=bot_headers(fake))
        assert response.status == 400, bad
    assert fake.commands == {}


async def test_wrong_token_on_the_gateway_closes_with_4004(fake: FakeDiscord,
                                                           http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(fake.gateway_url + "?v=10&encoding=json") as ws:
        client = RawGateway(ws, compressed=False)
        assert (await client.receive())["op"] == 10
        await client.send({"op": 2, "d": {"token": "wrong", "properties": {}}})
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 4004


async def test_interaction_rules(fake: FakeDiscord, http: aiohttp.ClientSession,
                                 gateway: RawGateway) -> None:
    interaction = await fake.invoke("ping", {"word": "hi"}, user=USER, guild_id=GUILD.id)
    event = await gateway.dispatch("INTERACTION_CREATE")
    data = event["d"]
    assert data["token"] == interaction.token
    assert data["attachment_size_limit"] == 1000
    assert data["member"]["permissions"] == "0"
    assert data["data"]["options"] == [{"name": "word", "type": 3, "value": "hi"}]
    webhook = f"/api/v10/webhooks/{fake.application_id}/{interaction.token}"

    early = await http.post(webhook, json={"content": "too early"})
    assert early.status == 404 and (await early.json())["code"] == 10015

    first = await ack(http, interaction, {"type": 5})
    assert first.status == 204
    again = await ack(http, interaction, {"type": 5})
    assert again.status == 400 and (await again.json())["code"] == 40060
    assert interaction.deferred and interaction.original is not None
    assert fake.messages_for(interaction) == []  # still "thinking"

    eleven = await http.post(webhook + "?wait=true", data=files_form({}, [1] * 11))
    assert eleven.status == 400
    too_big = await http.post(webhook + "?wait=true", data=files_form({}, [1001]))
    assert too_big.status == 413 and (await too_big.json())["code"] == 40005
    too_much = await http.post(webhook + "?wait=true", data=files_form({}, [900] * 6))
    assert too_much.status == 413
    empty = await http.post(webhook, json={"content": ""})
    assert empty.status == 400 and (await empty.json())["code"] == 50006
    long = await http.post(webhook, json={"content": "x" * 2001})
    assert long.status == 400

    # The first follow-up fills the deferred response; the next ones are new messages.
    payload = {"content": "two files", "attachments": [{"id": 0, "filename": "a.jpg"},
                                                       {"id": 1, "filename": "b.mp4"}]}
    filled = await http.post(webhook + "?wait=true", data=files_form(payload, [10, 20]))
    assert filled.status == 200
    assert (await filled.json())["id"] == str(interaction.original.id)
    await http.post(webhook, json={"content": "secret", "flags": EPHEMERAL})
    sent = fake.messages_for(interaction)
    assert [(m.kind, m.content, m.ephemeral) for m in sent] == [
        ("response", "two files", False), ("followup", "secret", True)]
    assert [(f.filename, f.size) for f in sent[0].attachments] == [("a.jpg", 10), ("b.mp4", 20)]

    edited = await http.patch(webhook + "/messages/@original", json={"content": "edited"})
    assert edited.status == 200 and interaction.original.content == "edited"

    fake.expire(interaction)
    expired = await http.post(webhook, json={"content": "late"})
    assert expired.status == 401 and (await expired.json())["code"] == 50027


async def test_acknowledging_late_fails(fake: FakeDiscord, http: aiohttp.ClientSession,
                                        gateway: RawGateway) -> None:
    fake.ack_deadline = 0.0
    interaction = await fake.invoke("ping", {"word": "hi"}, user=USER, guild_id=GUILD.id)
    response = await ack(http, interaction, {"type": 5})
    assert response.status == 404 and (await response.json())["code"] == 10062
    assert not interaction.acknowledged


async def test_hidden_commands_and_options(fake: FakeDiscord, gateway: RawGateway) -> None:
    with pytest.raises(CommandNotAvailable):
        await fake.invoke("admin", user=USER, guild_id=GUILD.id)
    with pytest.raises(CommandNotAvailable):
        await fake.invoke("admin", user=USER)  # contexts: servers only
    with pytest.raises(CommandNotAvailable):
        await fake.invoke("ping", user=USER, guild_id=GUILD.id)  # `word` is required
    with pytest.raises(CommandNotAvailable):
        await fake.invoke("nope", user=USER, guild_id=GUILD.id)
    allowed = await fake.invoke("admin", user=USER, guild_id=GUILD.id, permissions=MANAGE_GUILD)
    overridden = await fake.invoke("admin", user=USER, guild_id=GUILD.id, server_override=True)
    dm = await fake.invoke("ping", {"word": "dm", "times": 2}, user=USER)
    events = [(await gateway.dispatch("INTERACTION_CREATE"))["d"] for _ in range(3)]
    assert [e["id"] for e in events] == [str(allowed.id), str(overridden.id), str(dm.id)]
    assert "guild_id" not in events[2] and events[2]["user"]["id"] == str(USER.id)
    assert events[2]["channel"]["type"] == 1


async def test_modal_round_trip(fake: FakeDiscord, http: aiohttp.ClientSession,
                                gateway: RawGateway) -> None:
    interaction = await fake.invoke("ping", {"word": "key"}, user=USER, guild_id=GUILD.id,
                                    permissions=MANAGE_GUILD)
    modal = {"custom_id": "m1", "title": "Key", "components": [
        {"type": 18, "label": "Key", "component": {"type": 4, "custom_id": "api_key",
                                                   "style": 1}}]}
    assert (await ack(http, interaction, {"type": 9, "data": modal})).status == 204
    submit = await fake.submit_modal(interaction, {"api_key": "sk_live_x"})
    await gateway.dispatch("INTERACTION_CREATE")
    event = await gateway.dispatch("INTERACTION_CREATE")
    assert event["d"]["type"] == 5 and event["d"]["id"] == str(submit.id)
    assert event["d"]["data"] == {"custom_id": "m1", "components": [
        {"type": 18, "component": {"type": 4, "custom_id": "api_key", "value": "sk_live_x"}}]}
    assert event["d"]["member"]["permissions"] == str(MANAGE_GUILD)
    # A modal cannot answer a modal.
    assert (await ack(http, submit, {"type": 9, "data": modal})).status == 400


async def test_injected_429_is_retried_by_discord_py(fake: FakeDiscord) -> None:
    """discord.py only believes a 429 that carries `Via`; it then waits and retries."""
    restore = apply_endpoints(fake.api_url, fake.gateway_url)
    client = discord.Client(intents=discord.Intents.none())
    try:
        fake.inject_rate_limit("/users/@me", retry_after=0.01)
        await client.login(fake.token)
        assert fake.rate_limited == ["GET /api/v10/users/@me"]
        assert fake.requests.count("GET /api/v10/users/@me") == 2
    finally:
        await client.close()
        restore()


async def test_discord_py_connects_and_heartbeats(fake: FakeDiscord) -> None:
    fake.heartbeat_interval = 0.02
    restore = apply_endpoints(fake.api_url, fake.gateway_url)
    client = discord.Client(intents=discord.Intents(guilds=True), guild_ready_timeout=0.01)
    try:
        await client.login(fake.token)
        task = asyncio.create_task(client.connect(reconnect=False))
        await fake.wait_ready()
        await asyncio.wait_for(client.wait_until_ready(), 5)
        assert [g.id for g in client.guilds] == [GUILD.id]
        assert client.get_channel(4002) is not None
        await fake.wait_until(lambda: fake.heartbeats >= 3)
        assert client.latency < 1
        await client.close()
        await asyncio.wait_for(task, 5)
    finally:
        await client.close()
        restore()
