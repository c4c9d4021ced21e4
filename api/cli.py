"""``landcover serve [--host --port --workers]``: run the REST service under uvicorn.

Configuration comes from ``LANDCOVER_*`` environment variables (see :mod:`api.settings`);
``--data-dir``, ``--models-dir`` and ``--api-keys`` are shortcuts that set them for every
worker process. With ``--workers N`` uvicorn starts N processes; they share the database
and the storage folder, and each runs its own job runner.

Defaults for a newcomer: without ``--models-dir`` (and ``LANDCOVER_MODELS_DIR``) it serves
``models/`` when that holds bundles, else the folder of ``make demo``'s bundle
(``runs/demo/maml.bundle``, model ``maml``), else it exits saying how to get a bundle. On a
loopback address without keys it runs in *local mode*: a key generated for the session,
given to the page at ``/`` for loopback clients only (``api.routes.web``), so the page works
without setup; on any other address without keys it warns that every ``/v1`` call gets 401.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
from pathlib import Path

from pydantic import ValidationError

#: Where ``make demo`` (``landcover demo --out runs/demo``) writes its model bundle.
DEMO_BUNDLE = Path("runs/demo/maml.bundle")
NO_MODEL_HELP = """landcover serve: no base model to serve.
  The models folder {folder} holds no *.bundle file. Either
    - run `make demo` (about 7 minutes on 2 CPU cores); it writes {demo}, which
      `landcover serve` then serves as model 'maml'; or
    - pass a folder of bundles: `landcover serve --models-dir FOLDER`
      (make one with `landcover export RUN_DIR -o FOLDER/NAME.bundle`)."""


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    p = argparse.ArgumentParser(
        prog="landcover serve",
        description="Run the landcover REST service (OpenAPI docs at /docs).",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.add_argument("--data-dir", help="storage folder (sets LANDCOVER_DATA_DIR)")
    p.add_argument("--models-dir", help="folder of base *.bundle files (LANDCOVER_MODELS_DIR)")
    p.add_argument("--api-keys", help="comma-separated API keys (LANDCOVER_API_KEYS)")
    p.add_argument("--log-level", default="info", help="uvicorn log level")
    return p


def default_models_dir() -> Path | None:
    """``models/`` when it holds bundles, else the folder of ``make demo``'s bundle."""
    if any(Path("models").glob("*.bundle")):
        return Path("models")
    if DEMO_BUNDLE.is_file():
        return DEMO_BUNDLE.parent
    return None


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` binds only the loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def start_local_mode() -> str:
    """Generate this session's key; the page served to loopback clients uses it."""
    key = secrets.token_urlsafe(32)
    os.environ["LANDCOVER_LOCAL_KEY"] = key
    print(
        "landcover serve: local mode (loopback only, no LANDCOVER_API_KEYS): the page at / "
        "works without a key. Before exposing the service (--host 0.0.0.0), set API keys "
        "with --api-keys or LANDCOVER_API_KEYS and give each user one."
    )
    return key


def main(argv: list[str]) -> int:
    """Parse ``argv`` and serve until interrupted; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        print("landcover serve: --workers must be at least 1")
        return 2
    if args.models_dir is None and "LANDCOVER_MODELS_DIR" not in os.environ:
        found = default_models_dir()
        if found is None:
            print(NO_MODEL_HELP.format(folder=Path("models").resolve(), demo=DEMO_BUNDLE))
            return 2
        args.models_dir = str(found)
        print(f"landcover serve: serving the base models of {found}/ (--models-dir to change)")
    if args.api_keys is None and not os.environ.get("LANDCOVER_API_KEYS", "").strip():
        if is_loopback_host(args.host):
            args.api_keys = start_local_mode()
        else:
            print(
                f"landcover serve: WARNING: listening on {args.host} without API keys; every "
                "/v1 call will get 401. Set --api-keys (or LANDCOVER_API_KEYS) and give each "
                "user a key."
            )
    where = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"landcover serve: open http://{where}:{args.port}/ (API docs at /docs)")
    for flag, env in (
        ("data_dir", "LANDCOVER_DATA_DIR"),
        ("models_dir", "LANDCOVER_MODELS_DIR"),
        ("api_keys", "LANDCOVER_API_KEYS"),
    ):
        value = getattr(args, flag)
        if value is not None:
            os.environ[env] = value
    from api.settings import Settings

    try:
        Settings()
    except ValidationError as err:
        print(f"landcover serve: invalid configuration:\n{err}")
        return 2
    import uvicorn

    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        proxy_headers=True,
    )
    return 0
