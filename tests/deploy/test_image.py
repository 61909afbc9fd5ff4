"""deploy/Dockerfile and its locks: what each image installs, as far as it can be seen without
a Docker engine (none runs here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.packaging.venvs import Venv, run

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
LOCKS = ROOT / "deploy" / "requirements"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def stages() -> dict[str, list[str]]:
    """Each stage's instructions (continuation lines joined), by the name after AS."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("FROM "):
            current = found.setdefault(line.split(" AS ")[1].strip(), [])
        elif line and not line.startswith("#") and found:
            current.append(line)
    return found


def copied(stage: str) -> list[str]:
    """The sources of a stage's COPY instructions from the build context."""
    return [
        source
        for line in stages()[stage]
        if line.startswith("COPY ") and "--from=" not in line
        for source in line.split()[1:-1]
    ]


def lock_of(stage: str) -> Path:
    (lock,) = [LOCKS / Path(s).name for s in copied(stage) if s.startswith("deploy/requirements/")]
    return lock


def locked(lock: Path) -> dict[str, Version]:
    pins = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", lock.read_text(), re.MULTILINE)
    return {canonicalize_name(name): Version(version) for name, version in pins}


def requirements(*extras: str) -> list[Requirement]:
    found = [Requirement(r) for r in PROJECT["project"]["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in PROJECT["project"]["optional-dependencies"][extra]]
    return found


@pytest.mark.parametrize(
    ("stage", "extras"), [("server-deps", ("server",)), ("agent-deps", ()), ("wheel", ())]
)
def test_each_lock_pins_every_requirement_with_hashes(stage: str, extras: tuple[str]) -> None:
    lock = lock_of(stage)
    pins = locked(lock)
    wanted = (
        [Requirement(r) for r in PROJECT["build-system"]["requires"]]
        if stage == "wheel"
        else requirements(*extras)
    )
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock.name} lacks {requirement}"
        assert requirement.specifier.contains(pins[name]), f"{lock.name}: {name}=={pins[name]}"
    # Every pin carries its hashes: pip --require-hashes refuses the file otherwise.
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text().split("\n", 4)[-1].strip())
    assert len(entries) == len(pins)
    assert all("--hash=sha256:" in entry for entry in entries), lock.name
    # Neither image carries the embedded servers, nor the agent the server's dependencies.
    embedded = {
        canonicalize_name(Requirement(r).name)
        for r in PROJECT["project"]["optional-dependencies"]["embedded"]
    }
    assert not embedded & set(pins), lock.name
    if stage == "agent-deps":
        server = {canonicalize_name(r.name) for r in requirements("server")}
        bare = {canonicalize_name(r.name) for r in requirements()}
        assert not (server - bare) & set(pins)


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    """A change to the source rebuilds only the layers after its COPY, never the locked
    dependencies'; and every install is from a hashed lock, as wheels."""
    for name, lines in stages().items():
        installs = [i for i, line in enumerate(lines) if "pip install" in line]
        for i in installs:
            line = lines[i]
            assert "--require-hashes --only-binary=:all:" in line or "--no-deps" in line, line
        sources = [
            i
            for i, line in enumerate(lines)
            if line.startswith("COPY ") and "deploy/requirements" not in line
        ]
        hashed = [i for i in installs if "--require-hashes" in lines[i]]
        assert all(h < s for h in hashed for s in sources), name


def test_the_wheel_stage_copies_everything_the_wheel_is_built_from() -> None:
    hatch = PROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", PROJECT["project"]["readme"]}
    needed |= set(hatch["packages"]) | set(hatch["force-include"])
    assert needed <= set(copied("wheel")), needed - set(copied("wheel"))


def test_each_image_runs_as_a_numeric_user_from_a_pinned_base() -> None:
    text = DOCKERFILE.read_text()
    (base,) = re.findall(r"^ARG PYTHON=(\S+)$", text, re.MULTILINE)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    for image in ("server", "agent"):
        users = [line for line in stages()[image] if line.startswith("USER ")]
        assert users == ["USER 10001:10001"], image
        assert [line for line in stages()[image] if line.startswith("COPY --from=")] == [
            f"COPY --from={image}-deps /opt/deployx /opt/deployx"
        ]


def hashed_entries(lock: Path) -> dict[str, str]:
    """Each pin with its hashes, as the lock writes them (the `# via` comments left out)."""
    body = lock.read_text().split("\n", 4)[-1]
    entries = re.split(r"\n(?=[A-Za-z0-9])", body.strip())
    return {
        canonicalize_name(entry.split("==")[0]): re.sub(r"\s*#.*", "", entry).strip()
        for entry in entries
    }


def test_the_agent_lock_is_the_server_lock_for_what_they_share() -> None:
    """The same versions and hashes, so that installing the server's lock (below) proves the
    agent's as well."""
    agent, server = hashed_entries(lock_of("agent-deps")), hashed_entries(lock_of("server-deps"))
    assert agent and all(server.get(name) == entry for name, entry in agent.items())


def test_the_server_lock_installs_as_the_image_installs_it(tmp_path: Path) -> None:
    """The server-deps stage's install (hashes required, wheels only) in a fresh venv: every
    hash matches what the index serves, and the result is consistent (`pip check`)."""
    venv = Venv(tmp_path / "server")
    hashed = ["-m", "pip", "install", "-q", "--require-hashes", "--only-binary=:all:", "-r"]
    run([venv.bin("python"), *hashed, str(lock_of("server-deps"))], cwd=tmp_path, timeout=600)
    run([venv.bin("python"), "-m", "pip", "check"], cwd=tmp_path)
    # pip and setuptools come with every venv of this Python, not from the lock.
    installed = {canonicalize_name(n) for n in venv.distributions()} - {"pip", "setuptools"}
    assert installed == set(locked(lock_of("server-deps")))
