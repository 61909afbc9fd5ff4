"""NATS users for a deployment: one for the services, and one per agent, fenced to its subjects."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from urllib.parse import quote

import msgspec

from services.agent.file_protocol import files_subject
from services.agent.protocol import (
    DEVICE_ID_PATTERN,
    heartbeat_subject,
    jobs_subject,
    results_subject,
)
from services.infra.secret_files import private_dir, write_secret

SERVICE_USER = "deployx-services"


class Login(msgspec.Struct, frozen=True):
    """What `deployx agent --creds FILE` reads: a NATS user and password."""

    user: str
    password: str


class BadDeviceId(ValueError):
    """A device id that is not one NATS subject token (a wildcard, a dot, a path ...)."""


def check_device_id(device_id: str) -> str:
    # fullmatch: the pattern's "$" alone would let a trailing newline through.
    if not re.fullmatch(DEVICE_ID_PATTERN, device_id):
        raise BadDeviceId(
            f"bad device id {device_id!r}: use only letters, digits, _ : - "
            "(an id is one NATS subject token and a file name)"
        )
    return device_id


def agent_user(device_id: str) -> str:
    return f"agent-{device_id}"


def agent_inbox_prefix(device_id: str) -> str:
    """Replies to an agent (the file server's chunks) come only to its own inbox."""
    return f"_INBOX_{device_id}"


def agent_permissions(device_id: str) -> dict[str, dict[str, list[str]]]:
    """Its own job, result, heartbeat and file-request subjects and its inbox; nothing else.

    Nothing of JetStream: a client allowed to create consumers could point one's delivery at
    any subject (nats-server does not check deliver subjects), and one allowed to read the
    files stream could read every device's files. Files come from the file server instead.
    """
    check_device_id(device_id)
    return {
        "publish": {
            "allow": [
                results_subject(device_id),
                heartbeat_subject(device_id),
                files_subject(device_id),
            ]
        },
        "subscribe": {"allow": [jobs_subject(device_id), f"{agent_inbox_prefix(device_id)}.>"]},
    }


def render_authorization(service: Login, agents: dict[str, Login]) -> str:
    """An `authorization { users = [...] }` block for nats-server.conf (JSON is valid NATS conf)."""
    users: list[dict[str, object]] = [{"user": service.user, "password": service.password}]
    users += [
        {"user": login.user, "password": login.password, "permissions": agent_permissions(device)}
        for device, login in sorted(agents.items())
    ]
    return "authorization " + json.dumps({"users": users}, indent=2) + "\n"


def login_url(url: str, login: Login) -> str:
    """nats://host:port as nats://user:password@host:port (each of a comma-separated list)."""
    return ",".join(
        part.replace("://", f"://{quote(login.user, safe='')}:{quote(login.password, safe='')}@", 1)
        for part in url.split(",")
    )


def new_login(user: str) -> Login:
    return Login(user=user, password=secrets.token_urlsafe(24))


def write_auth_files(out_dir: Path, device_ids: list[str]) -> Login:
    """auth.conf for the server, agents/<id>.json for each agent; returns the services' login.

    Logins already in out_dir are kept, so adding an agent does not rotate the others. Every
    file is created readable by its owner only; a bad device id (one that is not a single
    subject token, or would name a file outside out_dir) is refused before anything is written.
    """
    bad = [device for device in device_ids if not re.fullmatch(DEVICE_ID_PATTERN, device)]
    if bad:
        raise BadDeviceId(
            f"bad device id {', '.join(map(repr, bad))}: use only letters, digits, _ : - "
            "(an id is one NATS subject token and a file name)"
        )
    agents_dir = private_dir(private_dir(out_dir) / "agents")
    known = [path.stem for path in agents_dir.glob("*.json")]
    for device in known:
        check_device_id(device)
    # Every path is checked before the first is written.
    agent_files = {device: creds_path(out_dir, device) for device in sorted({*device_ids, *known})}
    service_file, conf_file = _inside(out_dir, "service.json"), _inside(out_dir, "auth.conf")
    service = _load_or_create(service_file, SERVICE_USER)
    agents = {
        device: _load_or_create(path, agent_user(device)) for device, path in agent_files.items()
    }
    write_secret(conf_file, render_authorization(service, agents))
    return service


def creds_path(out_dir: Path, device_id: str) -> Path:
    """Where write_auth_files keeps an agent's login."""
    return _inside(out_dir, "agents", f"{check_device_id(device_id)}.json")


def _inside(out_dir: Path, *parts: str) -> Path:
    """out_dir/parts, refused if it would lead out of out_dir (through a symlink, say)."""
    path = out_dir.joinpath(*parts)
    if not path.parent.resolve().is_relative_to(out_dir.resolve()):
        raise ValueError(f"{path} leads outside {out_dir}: refusing to write there")
    return path


def _load_or_create(path: Path, user: str) -> Login:
    if path.is_file():
        return msgspec.json.decode(path.read_bytes(), type=Login)
    login = new_login(user)
    write_secret(path, msgspec.json.encode(login))
    return login
