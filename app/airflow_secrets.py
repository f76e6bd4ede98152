"""Per-install Airflow secrets: the Fernet key (connection passwords in the metadata database), the
JWT secret (tokens between API server, scheduler and workers) and the API server's secret key (UI
sessions, and the tokens with which the API server reads a task-log server).

Each is random, generated on first use under ``$AIRFLOW_HOME/secrets/`` (folder 0700, file 0600,
created atomically: concurrent first readers all get the same value) and never committed.
``airflow.cfg`` reads them with Airflow's ``*_cmd`` options, which run this file:

    fernet_key_cmd = sh -c 'exec python3 "$MMKG_ROOT/app/airflow_secrets.py" fernet_key'

so every Airflow process (CLI, API server, scheduler, task runners, ``dags test``) of one
``AIRFLOW_HOME`` shares one key without any of them being told. Standard library only: the command
runs under whichever ``python3`` is on PATH, without the project's packages.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path


def _fernet_key() -> str:
    # cryptography.fernet.Fernet.generate_key(): 32 random bytes, URL-safe base64.
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def _jwt_secret() -> str:
    # HS512 (Airflow's algorithm for a shared secret) wants a key of at least 64 bytes; PyJWT warns
    # (InsecureKeyLengthWarning) below that. 64 random bytes -> 86 URL-safe characters.
    return secrets.token_urlsafe(64)


GENERATORS = {"fernet_key": _fernet_key, "jwt_secret": _jwt_secret, "api_secret_key": lambda: secrets.token_urlsafe(32)}


def secrets_dir(airflow_home: str | os.PathLike) -> Path:
    return Path(airflow_home) / "secrets"


def secret(name: str, airflow_home: str | os.PathLike | None = None) -> str:
    """The install's secret ``name``, generated on first use."""
    if name not in GENERATORS:
        raise ValueError(f"unknown secret {name!r}; known: {sorted(GENERATORS)}")
    home = airflow_home or os.environ.get("AIRFLOW_HOME")
    if not home:
        raise RuntimeError("AIRFLOW_HOME is not set (source bin/env.sh)")
    folder = secrets_dir(home)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / name
    if not path.exists():
        # Write a private temporary file, then link it into place: os.link fails if another
        # process won the race, and then both read the winner's value.
        tmp = folder / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(GENERATORS[name]())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text(encoding="ascii").strip()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: airflow_secrets.py {{{'|'.join(GENERATORS)}}}", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(secret(argv[0]))
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"airflow_secrets: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
