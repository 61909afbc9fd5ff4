"""What an agent and the file server say on deployx.agents.<device_id>.files: a chunk a request.

An agent never reads the files bucket itself. It asks, on its own subject (so the sender's
device is the subject's, as NATS enforces), for the next chunk of the file of one of its jobs;
the file server checks that the job was sent to that device and answers one chunk, read with
the services' own JetStream permissions, to the agent's own inbox.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

ALL_FILE_REQUESTS = "deployx.agents.*.files"
FILE_SERVER_QUEUE = "deployx-file-server"

# Reply headers. The body of an "ok" reply is the chunk's bytes (none for an empty file).
STATUS = "Deployx-Status"
SEQUENCE = "Deployx-Sequence"  # the chunk's stream sequence: the next request's `after`
SIZE = "Deployx-Size"  # of the whole file, in bytes
CHUNKS = "Deployx-Chunks"  # how many chunks the whole file has
DIGEST = "Deployx-Digest"  # "SHA-256=<urlsafe base64>", as the object store records it

# ok: here is a chunk. refused: not a file of this device's jobs (or a malformed request).
# missing: the job's file is not (or no longer wholly) in the object store.
# unavailable: the server cannot tell right now (database or JetStream away): ask again.
Status = Literal["ok", "refused", "missing", "unavailable"]


def files_subject(device_id: str) -> str:
    return f"deployx.agents.{device_id}.files"


class ChunkRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The chunk of job_id's file file_id that follows stream sequence `after` (0: the first)."""

    job_id: Annotated[str, Meta(max_length=512)]
    file_id: Annotated[str, Meta(max_length=256)]
    after: Annotated[int, Meta(ge=0)] = 0
