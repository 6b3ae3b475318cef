"""What the stack's data was made with: a sha256 per generated credential, kept beside the data (not the secrets).

Losing `secrets/credentials.json`, or restoring an old copy, used to be found out by a restart: new passwords were
generated, Postgres and SeaweedFS were restarted with them and failed, and the data's owners were locked out.
With this record the mismatch is seen when the config loads, before any service is touched, and said in one line
with the two ways out. The digests reveal nothing usable: each credential is 32+ random characters.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

Entries = dict[str, str]  # "section/name" -> value (or its digest)
ROTATE = "platformctl rotate-credentials"


def flatten(data: dict[str, dict[str, str]]) -> Entries:
    return {f"{section}/{name}": value for section, names in data.items() for name, value in names.items()}


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def read_record(path: Path) -> Entries:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_record(path: Path, credentials: Entries) -> None:
    """Record (merge) the digests of ``credentials``; atomic, 0600."""
    record = {**read_record(path), **{key: digest(value) for key, value in credentials.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".credentials-record-")
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


def mismatch(record_path: Path, secrets_file: Path) -> str | None:
    """Why the credentials file cannot run the data it sits beside, or None when it can."""
    record = read_record(record_path)
    if not record:
        return None  # nothing made yet (or a stack from before the record: recorded on its next run)
    try:
        current = flatten(json.loads(secrets_file.read_text()))
    except FileNotFoundError:
        what = f"{secrets_file} is missing"
    except (OSError, ValueError) as err:
        what = f"{secrets_file} cannot be read ({type(err).__name__})"
    else:
        differ = sorted(key for key, value in record.items() if digest(current.get(key, "")) != value)
        if not differ:
            return None
        shown = ", ".join(differ[:3]) + (f" and {len(differ) - 3} more" if len(differ) > 3 else "")
        what = f"{secrets_file} does not hold the credentials {record_path.parent} was made with ({shown})"
    return (
        f"{what}: nothing was started or changed; restore the file from a backup, or run `{ROTATE}` "
        f"to give every role and S3 identity a new secret and roll the services"
    )
