"""A job's environment carries no DeployX setting of its agent (issue 15): an agent started with
the services' whole environment, as a shared container environment gives it, runs `env`."""

from __future__ import annotations

from services.infra.settings import SETTING_VARIABLES
from tests.e2e.fleet import Fleet, command_task, run_now

SECRET_SETTINGS = {
    "DEPLOYX_DATABASE_SESSION_URL": "postgresql://deployx:session-secret@db:5432/deployx",
    "DEPLOYX_TLS_KEY": "/etc/deployx/key-secret.pem",
    "DEPLOYX_FILES_QUOTA_BYTES": "987654321987",
}
JOB_VARIABLES = {"DEPLOYX_DEVICE_ID", "DEPLOYX_EXECUTION_ID", "DEPLOYX_TASK_ID"}


async def test_env_in_a_job_shows_no_deployx_setting(fleet: Fleet) -> None:
    fleet.executor()
    fleet.services.env.update(SECRET_SETTINGS)  # the agent's, beside the database and NATS URLs
    fleet.agent("env-probe")
    await fleet.wait_online(["env-probe"])
    task_id, execution_id = await run_now(fleet.api, command_task("env", ["env-probe"]))
    execution = await fleet.finished(task_id, execution_id)
    result = execution["result"]["execution_details"]["env-probe"]
    assert result["status"] == "success", result
    variables = dict(line.partition("=")[::2] for line in result["stdout"].splitlines())
    assert set(variables) >= JOB_VARIABLES
    assert not SETTING_VARIABLES & set(variables), SETTING_VARIABLES & set(variables)
    started_with = [
        fleet.services.env[name] for name in ("DEPLOYX_DATABASE_URL", "DEPLOYX_NATS_URL")
    ]
    for value in [*SECRET_SETTINGS.values(), *started_with]:
        assert value not in result["stdout"], value
