"""The agent on a managed device: announce, heartbeat, take jobs, run each job id once, report."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import socket
import ssl
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.aio.client
import nats.aio.msg
import structlog

from services.agent.capabilities import detect
from services.agent.dispatch import JobContext, Runner, execute, load_runners
from services.agent.journal import Journal
from services.agent.privileges import become
from services.agent.protocol import (
    AgentWork,
    CancelJob,
    Capabilities,
    Heartbeat,
    Job,
    JobOutcome,
    JobReport,
    heartbeat_subject,
    jobs_subject,
    results_subject,
)
from services.agent.software import load_driver_modules
from services.infra.bus import servers
from services.infra.nats_auth import agent_inbox_prefix

AGENT_VERSION = "0.1.0"
log = structlog.get_logger("deployx.agent")
_work = msgspec.json.Decoder(AgentWork)
CANCELED = "canceled on request: its process group got SIGTERM, then SIGKILL if still there"
_encode = msgspec.json.Encoder().encode


class AgentConfig(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    nats_url: str
    state_dir: Path
    creds: Path | None = None
    allow_roots: list[Path] = []
    labels: dict[str, str] = {}
    heartbeat_seconds: float = 5.0
    max_parallel_jobs: int = 8
    driver_modules: list[str] = []
    # A CA file to verify the server's TLS certificate with (the system's CAs otherwise).
    tls_ca: Path | None = None
    # Started as root: the user to become once the credentials are read.
    run_as: str | None = None


def connect_options(config: AgentConfig) -> dict[str, Any]:
    """The login and TLS settings, read from their files now (before any change of user)."""
    options: dict[str, Any] = {}
    if config.creds is not None:
        text = config.creds.read_text()
        if "BEGIN NATS USER JWT" in text:
            options["user_credentials"] = nats.aio.client.RawCredentials(text)
        else:
            login = msgspec.json.decode(text, type=dict[str, str])
            options["user"], options["password"] = login["user"], login["password"]
    if config.tls_ca is not None:
        options["tls"] = ssl.create_default_context(cafile=str(config.tls_ca))
    return options


async def connect(
    config: AgentConfig, options: dict[str, Any] | None = None
) -> nats.aio.client.Client:
    """Connects, retrying forever with backoff: an agent outlives any outage of the server."""
    if options is None:
        options = connect_options(config)

    async def report(exc: Exception) -> None:
        log.warning("nats_error", error=str(exc))

    return await nats.connect(
        servers(config.nats_url),
        name=f"deployx-agent-{config.device_id}",
        inbox_prefix=agent_inbox_prefix(config.device_id),
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
        allow_reconnect=True,
        error_cb=report,
        **options,
    )


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        client: nats.aio.client.Client,
        runners: dict[str, Runner] | None = None,
    ) -> None:
        self._config, self._nc = config, client
        self._journal = Journal(config.state_dir / f"{config.device_id}.jobs.sqlite")
        self._slots = asyncio.Semaphore(config.max_parallel_jobs)
        self._runners = load_runners() if runners is None else runners
        self._running: set[asyncio.Task[None]] = set()
        self._jobs: dict[str, asyncio.Task[None]] = {}  # by job id, while running
        self._canceled: set[str] = set()
        self._started_at = datetime.now(UTC)
        self._capabilities: Capabilities | None = None

    async def run(self, stop: asyncio.Event) -> None:
        load_driver_modules(self._config.driver_modules)
        self._capabilities = detect()
        log.info("agent_capabilities", **msgspec.structs.asdict(self._capabilities))
        await self._report_interrupted()
        subscription = await self._nc.subscribe(
            jobs_subject(self._config.device_id), cb=self._on_job
        )
        log.info("agent_ready", device_id=self._config.device_id)
        try:
            while not stop.is_set():
                await self._heartbeat()
                try:
                    async with asyncio.timeout(self._config.heartbeat_seconds):
                        await stop.wait()
                except TimeoutError:
                    pass
        finally:
            await subscription.unsubscribe()
            if self._running:
                await asyncio.wait(self._running, timeout=30)
            self._journal.close()

    async def _heartbeat(self) -> None:
        beat = Heartbeat(
            device_id=self._config.device_id,
            hostname=socket.gethostname(),
            os=f"{platform.system()} {platform.release()}",
            agent_version=AGENT_VERSION,
            labels=self._config.labels,
            started_at=self._started_at,
            sent_at=datetime.now(UTC),
            interval_seconds=self._config.heartbeat_seconds,
            capabilities=self._capabilities,
        )
        if self._nc.is_connected:
            await self._nc.publish(heartbeat_subject(self._config.device_id), _encode(beat))

    async def _report_interrupted(self) -> None:
        """Jobs cut off by a crash are reported failed: running them again could do harm twice."""
        for job_id in self._journal.unfinished():
            outcome = JobOutcome(
                status="failed",
                error="the agent stopped while this job ran; it is not run a second time",
            )
            self._journal.finish(job_id, outcome.report(job_id))
            await self._publish(outcome.report(job_id))

    async def _on_job(self, msg: nats.aio.msg.Msg) -> None:
        try:
            job = _work.decode(msg.data)
        except msgspec.DecodeError as exc:
            log.warning("bad_job", error=str(exc))
            return
        if isinstance(job, CancelJob):
            await self._cancel(job.job_id)
            return
        is_new, finished = self._journal.begin(job.job_id)
        if not is_new:
            # A redelivered job: repeat what we know about it, never run it again.
            await self._publish(finished or JobReport(job_id=job.job_id, state="accepted"))
            return
        task = asyncio.create_task(self._run_job(job))
        self._running.add(task)
        self._jobs[job.job_id] = task
        task.add_done_callback(self._running.discard)
        task.add_done_callback(lambda _: self._jobs.pop(job.job_id, None))

    async def _cancel(self, job_id: str) -> None:
        """Ends a running job; a job not seen yet is recorded canceled, so it never starts."""
        task = self._jobs.get(job_id)
        if task is not None:
            log.info("job_cancel", job_id=job_id)
            self._canceled.add(job_id)
            task.cancel()
            return
        is_new, finished = self._journal.begin(job_id)
        if is_new:
            finished = JobOutcome(status="canceled", error=CANCELED).report(job_id)
            self._journal.finish(job_id, finished)
        if finished is not None:
            await self._publish(finished)

    async def _run_job(self, job: Job) -> None:
        await self._publish(JobReport(job_id=job.job_id, state="accepted"))
        try:
            async with self._slots:
                log.info("job_started", job_id=job.job_id, task_type=job.task_type)
                try:
                    outcome = await self._execute(job)
                except Exception as exc:  # a runner bug must still end the job with an answer
                    log.exception("job_crashed", job_id=job.job_id)
                    outcome = JobOutcome(status="failed", error=f"the agent failed: {exc}")
        except asyncio.CancelledError:
            if job.job_id not in self._canceled:
                raise  # the agent itself is stopping
            outcome = JobOutcome(status="canceled", error=CANCELED)
        report = outcome.report(job.job_id)
        self._journal.finish(job.job_id, report)
        await self._publish(report)
        log.info("job_finished", job_id=job.job_id, status=outcome.status)

    async def _execute(self, job: Job) -> JobOutcome:
        context = JobContext(
            job=job,
            device_id=self._config.device_id,
            client=self._nc,
            state_dir=self._config.state_dir,
            allow_roots=self._config.allow_roots,
        )
        return await execute(job, context, self._runners)

    async def _publish(self, report: JobReport) -> None:
        await self._nc.publish(results_subject(self._config.device_id), _encode(report))


async def run_agent(config: AgentConfig, stop: asyncio.Event) -> None:
    options = connect_options(config)
    # Every kind's runner module is imported now: another user may not read Python's files.
    runners = load_runners()
    if config.run_as is not None:
        become(config.run_as, config.state_dir)
        log.info("agent_user", user=config.run_as, uid=os.getuid())
    client = await _until_stopped(connect(config, options), stop)
    if client is None:
        return  # told to stop before any server let us in (wrong address, CA, login ...)
    try:
        await Agent(config, client, runners).run(stop)
    finally:
        await client.drain()


async def _until_stopped(
    connecting: Coroutine[Any, Any, nats.aio.client.Client], stop: asyncio.Event
) -> nats.aio.client.Client | None:
    """The connection, or None if stop is set first: connecting retries for ever."""
    attempt = asyncio.ensure_future(connecting)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if attempt.done():
        return attempt.result()
    attempt.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await attempt
    return None


def default_state_dir() -> Path:
    return Path(os.environ.get("DEPLOYX_AGENT_STATE_DIR", "~/.deployx-agent")).expanduser()
