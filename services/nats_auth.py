"""NATS users for a deployment: one for the services, and one per agent, fenced to its subjects."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import msgspec

from services.agent_protocol import FILES_BUCKET, heartbeat_subject, jobs_subject, results_subject

SERVICE_USER = "deployx-services"
_FILES_STREAM = f"OBJ_{FILES_BUCKET}"


class Login(msgspec.Struct, frozen=True):
    """What `deployx agent --creds FILE` reads: a NATS user and password."""

    user: str
    password: str


def agent_user(device_id: str) -> str:
    return f"agent-{device_id}"


def agent_inbox_prefix(device_id: str) -> str:
    """Replies to an agent (JetStream API answers, object chunks) come only to its own inbox."""
    return f"_INBOX_{device_id}"


def agent_permissions(device_id: str) -> dict[str, dict[str, list[str]]]:
    """Its own job, result and heartbeat subjects, and reading the files bucket; nothing else."""
    return {
        "publish": {
            "allow": [
                results_subject(device_id),
                heartbeat_subject(device_id),
                # Reading an object: stream info, an ordered consumer, flow control replies.
                "$JS.API.INFO",
                "$JS.API.STREAM.NAMES",
                f"$JS.API.STREAM.INFO.{_FILES_STREAM}",
                f"$JS.API.STREAM.MSG.GET.{_FILES_STREAM}",
                f"$JS.API.DIRECT.GET.{_FILES_STREAM}.>",
                f"$JS.API.CONSUMER.CREATE.{_FILES_STREAM}",
                f"$JS.API.CONSUMER.CREATE.{_FILES_STREAM}.>",
                f"$JS.API.CONSUMER.DELETE.{_FILES_STREAM}.>",
                f"$JS.API.CONSUMER.INFO.{_FILES_STREAM}.>",
                "$JS.FC.>",
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


def new_login(user: str) -> Login:
    return Login(user=user, password=secrets.token_urlsafe(24))


def write_auth_files(out_dir: Path, device_ids: list[str]) -> Login:
    """auth.conf for the server, agents/<id>.json for each agent; returns the services' login.

    Logins already in out_dir are kept, so adding an agent does not rotate the others.
    """
    agents_dir = out_dir / "agents"
    agents_dir.mkdir(parents=True, exist_ok=True)
    service = _load_or_create(out_dir / "service.json", SERVICE_USER)
    agents = {
        device: _load_or_create(agents_dir / f"{device}.json", agent_user(device))
        for device in sorted({*device_ids, *(path.stem for path in agents_dir.glob("*.json"))})
    }
    (out_dir / "auth.conf").write_text(render_authorization(service, agents))
    return service


def _load_or_create(path: Path, user: str) -> Login:
    if path.is_file():
        return msgspec.json.decode(path.read_bytes(), type=Login)
    login = new_login(user)
    path.write_bytes(msgspec.json.encode(login))
    path.chmod(0o600)
    return login
