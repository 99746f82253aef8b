"""Create the read-only MLflow user the chart's drift CronJobs sign in as, on an MLflow
server running the basic-auth app (`mlflow server --app-name basic-auth`).

`python -m anomalyops.components.registry.auth_users TRACKING_URI`: the admin signs in
with MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD; the reader is
ANOMALYOPS_MLFLOW_READER / ANOMALYOPS_MLFLOW_READER_PASSWORD. A reader that already exists
is left as it is. Readers get the server's default permission (READ in the chart): they
cannot register versions or move aliases. Exit 0 done, 1 the server is not answering yet
(the chart's Job retries), 2 anything else.
"""

from __future__ import annotations

import os
import sys


def ensure_reader(tracking_uri: str, username: str, password: str) -> str:
    """Create USERNAME unless it exists; 'created' or 'exists'."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    client = AuthServiceClient(tracking_uri)
    try:
        client.get_user(username)
        return "exists"
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    client.create_user(username, password)
    return "created"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m anomalyops.components.registry.auth_users TRACKING_URI",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        username = os.environ["ANOMALYOPS_MLFLOW_READER"]
        password = os.environ["ANOMALYOPS_MLFLOW_READER_PASSWORD"]
    except KeyError as missing:
        print(f"error: {missing.args[0]} is not set", file=sys.stderr)
        return 2
    try:
        outcome = ensure_reader(args[0], username, password)
    except OSError as error:  # connection refused, timeouts: the server is starting
        print(f"MLflow at {args[0]} not answering yet: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    print(f"MLflow reader {username!r}: {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
